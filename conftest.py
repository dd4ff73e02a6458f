"""pytest's root configuration: the Kafka broker fixtures are a plugin of the test suite."""

pytest_plugins = ["tests.kafka_fixtures"]
