"""Continuous ETL: Kafka in, parse, validate, enrich with an async lookup, Kafka (or a file) out.

Nothing is dropped silently:

- bytes that are not JSON go to the dead-letter topic ``payments.dead`` (raw bytes, with headers
  naming the error and the record's topic, partition and offset);
- JSON that is not a valid payment goes to the ``payments.invalid`` topic with the reason;
- valid payments are enriched with their merchant's details through an async lookup (a stand-in for
  an HTTP or database call: at most 50 in flight, 2 s timeout, 2 retries), results in input order,
  and written to ``payments.enriched`` (or, with ``--output FILE``, to a JSON-lines file, exactly
  once per checkpoint).

Run it (with a broker; ``eval "$(python3 scripts/kafka/broker.py start)"`` starts one)::

    python3 examples/etl.py                 # until Ctrl-C
    python3 examples/etl.py --bounded       # what the topic holds now, then stop
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from actorflow import Collector, Context, DataStream, Flow, OutputTag, ProcessFunction

try:
    from actorflow_kafka import DeadLetterTopic, KafkaSink, KafkaSource
except ImportError:  # pragma: no cover - the kafka extra is in the dev extra
    raise SystemExit("examples/etl.py needs aiokafka: pip install 'actorflow[kafka]'") from None

INVALID: OutputTag[dict[str, Any]] = OutputTag("invalid")
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "payment_id": int,
    "merchant_id": str,
    "amount": (int, float),
    "ts": int,
}

#: The "remote" merchant directory the lookup calls.
MERCHANTS = {
    f"m{n}": {"name": f"Merchant {n}", "country": ("FR", "DE", "US", "JP")[n % 4]} for n in range(100)
}


def problem(record: Any) -> str | None:
    """Why ``record`` is not a valid payment, or None.

    >>> problem({"payment_id": 1, "merchant_id": "m1", "amount": 9.5, "ts": 0}) is None
    True
    >>> problem({"payment_id": 1, "merchant_id": "m1", "amount": -1, "ts": 0})
    'amount must be positive'
    """
    if not isinstance(record, dict):
        return "not a JSON object"
    for field, kind in REQUIRED.items():
        if not isinstance(record.get(field), kind) or isinstance(record.get(field), bool):
            return f"{field} is missing or not {getattr(kind, '__name__', 'a number')}"
    if record["amount"] <= 0:
        return "amount must be positive"
    return None


class Validate(ProcessFunction[Any, dict[str, Any]]):
    """Valid payments go on; the others to the ``invalid`` side output with the reason."""

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        reason = problem(value)
        if reason is None:
            out.collect(value)
        else:
            ctx.output(INVALID, {"record": value, "reason": reason})


async def lookup_merchant(payment: dict[str, Any]) -> dict[str, Any]:
    """The async lookup: a payment with its merchant's name and country (unknown: nulls)."""
    await asyncio.sleep(0)  # a real one awaits an HTTP or database round trip here
    merchant = MERCHANTS.get(payment["merchant_id"], {"name": None, "country": None})
    return {**payment, "merchant": merchant}


def pipeline(raw: DataStream[Any]) -> tuple[DataStream[dict[str, Any]], DataStream[dict[str, Any]]]:
    """Parsed records in; (enriched payments, invalid records) out."""
    validated = raw.process(Validate(), name="validate")
    enriched = validated.map_async(
        lookup_merchant, capacity=50, timeout_ms=2_000, retries=2, ordered=True, name="enrich"
    )
    return enriched, validated.get_side_output(INVALID)


def build(
    bootstrap_servers: str,
    *,
    topic: str = "payments",
    output: str | None = None,
    bounded: bool = False,
    group_id: str = "payments-etl",
    dead_letters: str | None = None,
    invalid_topic: str | None = None,
    enriched_topic: str | None = None,
) -> Flow:
    """The ETL flow from ``topic``; ``output`` a JSON-lines file instead of ``<topic>.enriched``.
    The other topics default to ``<topic>.dead``, ``<topic>.invalid`` and ``<topic>.enriched``."""
    flow = Flow("payments-etl")
    source = KafkaSource(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        dead_letters=DeadLetterTopic(dead_letters or f"{topic}.dead"),
        bounded=bounded,
    )
    # No event time here: the timestamp is read after validation, not from records that may lack it.
    raw = flow.from_source(source, name="payments")
    enriched, invalid = pipeline(raw)
    if output is None:
        enriched.sink(
            KafkaSink(
                enriched_topic or f"{topic}.enriched", bootstrap_servers=bootstrap_servers, key="payment_id"
            )
        )
    else:
        enriched.sink_to_json_lines(output, exactly_once=True)
    invalid.sink(KafkaSink(invalid_topic or f"{topic}.invalid", bootstrap_servers=bootstrap_servers))
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description="payments ETL: Kafka -> validate -> enrich -> Kafka/file")
    parser.add_argument("--topic", default="payments")
    parser.add_argument("--output", help="a JSON-lines file instead of the enriched topic")
    parser.add_argument("--bounded", action="store_true", help="stop at the end of what the topic holds")
    args = parser.parse_args()
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    build(servers, topic=args.topic, output=args.output, bounded=args.bounded).execute()


if __name__ == "__main__":
    main()
