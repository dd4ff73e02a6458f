"""docker/: no Docker engine runs here, so check what can be checked without one.

The compose file parses; Kafka is the official image in KRaft mode, without topic auto-creation,
and the topics service creates every topic the daemon's flow reads or writes; every build context,
Dockerfile, COPY source, script and example it names exists; the producer's and the daemon's command
lines and the daemon's ``ACTORFLOW_*`` settings are ones they accept; the generator runs for ever and
nothing waits for it to end; checkpoints are on a declared volume.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from actorflow.cli.config import flags_of, resolve
from actorflow.cli.main import build_parser
from actorflow_kafka import DeadLetterTopic, KafkaSource
from examples import fraud_detection, kafka_producer

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
#: The services built from the repository (the actorflow image); all reach Kafka at kafka:9092.
OURS = ("topics", "generator", "fraud-detection")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The argument list of ``ENTRYPOINT ["a", "b"]`` (JSON), or the words of the shell form."""
    if arguments.startswith("["):
        parsed = json.loads(arguments)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]
    return shlex.split(arguments)


def test_the_compose_file_has_kafka_the_topics_the_generator_and_the_daemon(
    compose: dict[str, Any],
) -> None:
    assert set(compose["services"]) == {"kafka", *OURS}


def test_kafka_is_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    # The same release the tests run against (scripts/kafka/broker.py).
    broker_script = (ROOT / "scripts" / "kafka" / "broker.py").read_text()
    assert f'DEFAULT_KAFKA_VERSION = "{tag}"' in broker_script
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert not any("ZOOKEEPER" in key for key in env)
    listeners = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == "kafka:9092"
    for service in OURS:
        assert compose["services"][service]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert compose["services"][service]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_every_build_context_and_dockerfile_exists(compose: dict[str, Any]) -> None:
    for name in OURS:
        build = compose["services"][name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()


def test_the_dockerfile_is_slim_non_root_and_copies_only_what_exists() -> None:
    instructions = dockerfile_instructions(DOCKER / "Dockerfile")
    keywords = [keyword for keyword, _ in instructions]
    base = dict(instructions)["FROM"]
    assert re.fullmatch(r"python:3\.1[1-9]-slim", base), base
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, (k, a) in enumerate(instructions) if k == "RUN")
    copied: dict[str, int] = {}  # source -> index of its COPY
    for index, (keyword, arguments) in enumerate(instructions):
        if keyword in ("COPY", "ADD"):
            *sources, _destination = [word for word in shlex.split(arguments) if not word.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} is not in the build context"
                copied[source.rstrip("/")] = index
    [(install_at, install)] = [
        (index, arguments)
        for index, (keyword, arguments) in enumerate(instructions)
        if keyword == "RUN" and "pip install" in arguments
    ]
    extras = re.search(r'"\.\[([a-z,]+)\]"', install)
    assert extras is not None and {"kafka", "web"} <= set(extras.group(1).split(","))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(extras.group(1).split(",")) <= set(pyproject["project"]["optional-dependencies"])
    # What pip needs to build the package is copied before it runs.
    for needed in ("pyproject.toml", "README.md", "actorflow", "actorflow_kafka"):
        assert copied[needed] < install_at
    entrypoint = exec_form(dict(instructions)["ENTRYPOINT"])
    assert entrypoint == ["actorflow"]
    assert pyproject["project"]["scripts"]["actorflow"] == "actorflow.cli.main:main"
    command = exec_form(dict(instructions)["CMD"])
    build_parser().parse_args(command)  # a command line actorflow accepts
    assert (ROOT / command[1]).is_file()


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    ignored = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".git" in ignored
    for kept in ("pyproject.toml", "README.md", "actorflow", "actorflow_kafka", "examples"):
        assert kept not in ignored


def test_the_daemon_runs_the_fraud_example_in_two_workers_with_state_in_kafka(
    compose: dict[str, Any],
) -> None:
    daemon = compose["services"]["fraud-detection"]
    command = daemon["command"]
    arguments = build_parser().parse_args(command)
    assert arguments.command == "run"
    assert arguments.target == "examples/fraud_detection.py"
    assert (ROOT / arguments.target).is_file()
    assert arguments.http_port == "8081"

    environ = {key: str(value) for key, value in daemon["environment"].items() if "${" not in str(value)}
    assert all(
        key.startswith("ACTORFLOW_") or key == "KAFKA_BOOTSTRAP_SERVERS" for key in daemon["environment"]
    )
    config = resolve(flags_of(arguments), environ)  # every setting is known and valid
    assert config.workers == 2
    assert config.http_port == 8081 and config.http_host == "0.0.0.0"
    assert config.log_format == "json"
    # Partition tasks keep their state in Kafka: no checkpoint directory, which two workers could
    # not share anyway.
    assert config.checkpoint_dir is None
    assert "volumes" not in daemon
    published = [port.rsplit(":", 2) for port in daemon["ports"]]
    assert [container for *_, container in published] == ["8081", "8082"]  # worker i on 8081 + i
    assert "8081/healthz" in " ".join(daemon["healthcheck"]["test"])
    assert int(daemon["stop_grace_period"].rstrip("s")) >= 30  # time for the tasks' last commits


def test_the_topics_and_the_generator_run_the_producer_with_a_command_it_accepts(
    compose: dict[str, Any],
) -> None:
    for name in ("topics", "generator"):
        service = compose["services"][name]
        interpreter, script = service["entrypoint"]
        assert interpreter == "python"
        assert script == "examples/kafka_producer.py"
        kafka_producer.parse_args(service["command"])  # argparse exits on a bad command line
    # The script runs as a script too (its imports work from examples/, as in the image).
    helped = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "--generate" in helped.stdout
    assert kafka_producer.parse_args(compose["services"]["topics"]["command"]).topics_only


def test_the_generator_streams_for_ever_and_nothing_waits_for_its_end(compose: dict[str, Any]) -> None:
    services = compose["services"]
    generator = kafka_producer.parse_args(services["generator"]["command"])
    assert generator.generate and generator.limit is None and generator.rate > 0
    assert not generator.no_rules  # the run-time rules go to the rules topic
    assert services["generator"]["restart"] == "on-failure"
    for name in ("generator", "fraud-detection"):
        depends = services[name]["depends_on"]
        assert "generator" not in depends
        assert depends["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["restart"] == "no"


def _topics_of(flow_nodes: list[Any]) -> set[str]:
    """Every topic the nodes' Kafka sources read or send dead letters to, and their sinks write."""
    names: set[str] = set()
    for node in flow_nodes:
        if isinstance(node.source, KafkaSource):
            names.update(node.source.topics)
            if isinstance(node.source.dead_letters, DeadLetterTopic):
                names.add(node.source.dead_letters.topic)
        elif node.kind == "sink" and node.name.startswith("kafka:"):
            names.add(node.name.removeprefix("kafka:"))
    return names


def test_the_topics_service_creates_every_topic_the_daemon_uses(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # The flow the daemon runs: the example's `flow` with the daemon's Kafka settings.
    monkeypatch.setenv(
        "KAFKA_BOOTSTRAP_SERVERS", services["fraud-detection"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    )
    daemon = fraud_detection.flow([])
    used = _topics_of([node for chain in daemon.plan().chains for node in chain.nodes])
    assert used == {"transactions", "rules", "alerts", "transactions.dead"}
    arguments = kafka_producer.parse_args(services["topics"]["command"])
    created = kafka_producer.Topics(
        arguments.transactions_topic, arguments.rules_topic, arguments.alerts_topic
    )
    assert set(created.partitions()) == used
    assert created.partitions()["transactions"] > 1  # several consumers can share the input


def test_the_readme_uses_the_compose_file_and_its_services(compose: dict[str, Any]) -> None:
    readme = (DOCKER / "README.md").read_text()
    commands = re.findall(r"docker compose -f (\S+) (\w+) (?:-{1,2}\S+ )*([\w-]+)?", readme)
    assert commands
    for path, verb, service in commands:
        assert (ROOT / path).resolve() == DOCKER / "compose.yaml"
        if verb in ("run", "exec", "logs", "stop") and service:
            assert service in compose["services"], service
