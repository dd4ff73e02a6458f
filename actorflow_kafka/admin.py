"""Settings shared by the Kafka clients the connector creates besides its consumers and producers."""

from __future__ import annotations

__all__ = ["ADMIN_OPTIONS"]

#: The client settings (from a consumer's or producer's options) that an admin client also needs,
#: so that metadata and topic calls reach the same cluster the same way (TLS, SASL, timeouts).
ADMIN_OPTIONS = frozenset(
    {
        "client_id",
        "request_timeout_ms",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    }
)
