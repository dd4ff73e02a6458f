"""A real single-node Apache Kafka broker (KRaft: broker + controller in one JVM) for tests and benchmarks.

No Docker and no Kafka download: Maven resolves the broker's jars from the ``pom.xml`` beside this file
into a cache folder once, and every later start reuses them. Only the standard library is used here.

    with KafkaBroker() as broker:
        print(broker.bootstrap_servers)   # "127.0.0.1:PORT"
        broker.restart()                  # same port, same data: the topics and their records survive

The command line does the same for a shell (``start`` leaves the broker running in the background and
records it in a state file that ``stop`` reads):

    python scripts/kafka/broker.py fetch              # resolve the jars (a no-op when they are cached)
    eval "$(python scripts/kafka/broker.py start)"    # export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
    python scripts/kafka/broker.py stop
    python scripts/kafka/broker.py run                # in the foreground until Ctrl-C

Environment: ``ACTORFLOW_KAFKA_VERSION`` (default ``DEFAULT_KAFKA_VERSION``), ``ACTORFLOW_KAFKA_CACHE``
(the cache root, default ``~/.cache/actorflow``: the jars go to ``<root>/kafka-<version>/libs``),
``JAVA_HOME`` (else ``java`` on the PATH), ``MVN`` (else ``mvn`` on the PATH).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "KafkaBroker",
    "KafkaBrokerError",
    "KafkaUnavailable",
    "default_cache_root",
    "fetch",
    "libs_dir",
]

#: The newest Kafka release that works with aiokafka 0.14, transactions and consumer groups included.
DEFAULT_KAFKA_VERSION = "4.4.0"

POM = Path(__file__).resolve().with_name("pom.xml")
_COMPLETE_MARKER = ".complete"
_LOG_TAIL_LINES = 40


def _new_cluster_id() -> str:
    """A Kafka cluster id: a UUID in unpadded URL-safe base64 (22 characters).

    One that starts with "-" would be read as an option by the storage tool's argument parser
    (one id in 64 did, and failed the format): draw again until it does not.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBrokerError(RuntimeError):
    """The broker failed to start, answer or stop."""


class KafkaUnavailable(KafkaBrokerError):
    """The broker cannot be run on this machine: no Java, no Maven, or its jars could not be resolved."""


# ---------------------------------------------------------------------------------------------- jars


def default_cache_root() -> Path:
    """``$ACTORFLOW_KAFKA_CACHE``, else ``$XDG_CACHE_HOME/actorflow``, else ``~/.cache/actorflow``."""
    override = os.environ.get("ACTORFLOW_KAFKA_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "actorflow"


def libs_dir(version: str, cache_root: Path | None = None) -> Path:
    """Where the jars of Kafka ``version`` live: ``<cache root>/kafka-<version>/libs``."""
    return (cache_root or default_cache_root()) / f"kafka-{version}" / "libs"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailable("no `java` on the PATH (and none under $JAVA_HOME): Kafka needs Java 17+")
    return found


def _mvn() -> str:
    found = shutil.which(os.environ.get("MVN", "mvn"))
    if found is None:
        raise KafkaUnavailable("no `mvn` on the PATH: Maven resolves the Kafka broker's jars")
    return found


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so that parallel test processes fetch the jars once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, the rename below still keeps it whole
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fetch(
    version: str = DEFAULT_KAFKA_VERSION, cache_root: Path | None = None, *, quiet: bool = True
) -> Path:
    """Resolve the jars of Kafka ``version`` into the cache (skipped when they are there); their folder.

    The first run downloads about 45 MB into Maven's local repository (``~/.m2``) and copies the jars
    to the cache; later runs only check for a marker file.
    """
    target = libs_dir(version, cache_root)
    if (target / _COMPLETE_MARKER).is_file():
        return target
    java = _java()  # fail early and clearly: the jars are useless without Java
    mvn = _mvn()
    with _file_lock(target.parent / ".fetch.lock"):
        if (target / _COMPLETE_MARKER).is_file():  # another process fetched them while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target.parent))
        try:
            command = [
                mvn,
                "-B",
                "--no-transfer-progress",
                *(["-q"] if quiet else []),
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={version}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ]
            environment = dict(os.environ)
            # Maven runs on the same Java as the broker.
            environment.setdefault("JAVA_HOME", str(Path(java).resolve().parent.parent))
            result = subprocess.run(
                command, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip().splitlines()
                raise KafkaUnavailable(
                    f"resolving Kafka {version}'s jars with Maven failed (exit {result.returncode}):\n"
                    + "\n".join(output[-_LOG_TAIL_LINES:])
                )
            if not any(staging.glob(f"kafka_2.13-{version}.jar")):
                raise KafkaUnavailable(f"Maven ran but kafka_2.13-{version}.jar is not among the jars")
            (staging / _COMPLETE_MARKER).write_text(f"kafka {version}\n")
            if target.exists():  # a partial folder from an interrupted run of an older layout
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------- probing


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def _metadata_brokers(host: str, port: int, timeout: float) -> list[tuple[int, str, int]]:
    """The live brokers a Metadata request (v4) to ``host:port`` lists, as ``(node id, host, port)``.

    A KRaft broker accepts connections before it has caught up with the controller and been unfenced;
    while it is fenced it lists no broker, so a non-empty answer means producers and consumers can work.
    """
    client_id = b"actorflow-probe"
    correlation_id = 1
    # Request header v1 (api key 3 = Metadata, version 4, correlation id, client id), then the body:
    # topics = [] (none, so the request is cheap), allow_auto_topic_creation = false.
    payload = (
        struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        body = _recv_exactly(sock, size)
    answered_id, _throttle_ms, broker_count = struct.unpack_from(">iii", body, 0)
    if answered_id != correlation_id:
        raise ConnectionError(f"unexpected correlation id {answered_id}")
    offset = 12
    brokers: list[tuple[int, str, int]] = []
    for _ in range(broker_count):
        (node_id, host_length) = struct.unpack_from(">ih", body, offset)
        offset += 6
        broker_host = body[offset : offset + host_length].decode()
        offset += host_length
        (broker_port, rack_length) = struct.unpack_from(">ih", body, offset)
        offset += 6 + max(rack_length, 0)
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def _log_excerpt(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The first ERROR of the broker's log with what follows it (the cause), then the log's last lines."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no broker log)"
    if not text:
        return "(the broker log is empty)"
    tail_from = max(len(text) - lines, 0)
    first_error = next(
        (n for n, line in enumerate(text) if " ERROR " in line or " FATAL " in line or "Exception" in line),
        None,
    )
    if first_error is None or first_error >= tail_from:
        return "\n".join(text[tail_from:])
    cause = text[first_error : min(first_error + 20, tail_from)]
    return "\n".join([*cause, "[...]", *text[tail_from:]])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the broker when the thread that forked it ends, e.g. when Python dies by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class _Spawner:
    """Forks every tied broker from one daemon thread that lives as long as the process.

    Linux's parent-death signal follows the *thread* that forked the child, and ``restart()`` may run in
    a short-lived worker thread (``asyncio.to_thread``): forking there would SIGTERM the broker as soon
    as that thread exits. A daemon thread ends only with the process, which is when the broker should.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None

    def spawn(self, launch: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="kafka-broker-spawner", daemon=True
                )
                self._thread.start()
        result: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((launch, result))
        return result.result()

    def _serve(self) -> None:
        while True:
            launch, result = self._requests.get()
            try:
                result.set_result(launch())
            except BaseException as error:  # handed to the caller
                result.set_exception(error)


_SPAWNER = _Spawner()


_LIVE_BROKERS: set[KafkaBroker] = set()


@atexit.register
def _stop_live_brokers() -> None:
    for broker in list(_LIVE_BROKERS):
        broker.stop()


# -------------------------------------------------------------------------------------------- broker


class KafkaBroker:
    """One Kafka broker + KRaft controller on loopback ports, its data in a temporary folder.

    ``start()`` fetches the jars if needed, formats the storage, launches the JVM and returns once a
    Metadata request lists the broker as live. ``stop()`` ends it (SIGTERM, then SIGKILL) and removes
    the folder; ``restart()`` ends it and starts it again on the same ports with the same data. A broker
    still running when Python exits is stopped then.
    """

    #: It can be restarted (unlike a broker someone else runs: see ``tests/kafka_fixtures.py``).
    restartable = True

    def __init__(
        self,
        *,
        version: str | None = None,
        cache_root: Path | None = None,
        port: int | None = None,
        auto_create_topics: bool = True,
        heap: str = "512m",
        startup_timeout: float = 90.0,
        shutdown_timeout: float = 30.0,
        extra_config: Mapping[str, str] | None = None,
        detached: bool = False,
    ) -> None:
        self.version = version or os.environ.get("ACTORFLOW_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION
        self.cache_root = cache_root
        self.auto_create_topics = auto_create_topics
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.extra_config = dict(extra_config or {})
        # Detached: the broker outlives this Python process (the CLI's `start`); otherwise it is stopped
        # at exit, and on Linux it gets SIGTERM when the process dies without running atexit.
        self.detached = detached
        self._requested_port = port
        self._port: int | None = None
        self._controller_port: int | None = None
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._cluster_id: str | None = None

    # -- what a client needs

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise KafkaBrokerError("the broker has not been started")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers=`` of any Kafka client."""
        return f"{self.host}:{self.port}"

    @property
    def workdir(self) -> Path:
        """The broker's temporary folder: ``server.properties``, ``broker.log``, ``data/``."""
        if self._workdir is None:
            raise KafkaBrokerError("the broker has not been started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def libs(self) -> Path:
        return libs_dir(self.version, self.cache_root)

    # -- life cycle

    def fetch(self) -> Path:
        """Resolve the jars (skipped when they are cached); their folder."""
        return fetch(self.version, self.cache_root)

    def start(self) -> KafkaBroker:
        """Start a fresh broker (new ports unless ``port`` was given, new empty data) and wait for it."""
        if self.is_running():
            raise KafkaBrokerError(f"the broker is already running on {self.bootstrap_servers}")
        self.fetch()
        self._workdir = Path(tempfile.mkdtemp(prefix="actorflow-kafka-"))
        if self._requested_port is not None:
            self._port = self._requested_port
            (self._controller_port,) = _free_ports(1)
        else:
            self._port, self._controller_port = _free_ports(2)
        self._cluster_id = _new_cluster_id()
        try:
            self._write_config()
            self._format_storage()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End the broker (SIGTERM, then SIGKILL after ``shutdown_timeout``) and remove its folder."""
        self._terminate(graceful=True)
        _LIVE_BROKERS.discard(self)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._port = self._controller_port = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would, keeping its data for ``resume()``."""
        self._terminate(graceful=False)

    def resume(self) -> None:
        """Start the stopped (or killed) broker again on its ports, with its data, and wait for it."""
        if self._workdir is None:
            raise KafkaBrokerError("the broker has not been started")
        if self.is_running():
            raise KafkaBrokerError(f"the broker is already running on {self.bootstrap_servers}")
        self._launch()

    def restart(self, *, graceful: bool = True) -> None:
        """Stop the broker and start it again on the same port with the same data; wait until it answers.

        ``graceful=False`` SIGKILLs it instead of a controlled shutdown, so it recovers its logs on start.
        """
        if self._workdir is None:
            raise KafkaBrokerError("the broker has not been started")
        self._terminate(graceful=graceful)
        self._launch()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.bootstrap_servers if self._port is not None else "not started"
        state = "running" if self.is_running() else "stopped"
        return f"KafkaBroker(version={self.version!r}, {where}, {state})"

    # -- the parts

    def properties(self) -> dict[str, str]:
        """The ``server.properties`` of this broker (after ``start()`` has chosen its ports)."""
        assert self._port is not None and self._controller_port is not None and self._workdir is not None
        controller = f"127.0.0.1:{self._controller_port}"
        config = {
            # One process is both broker and the sole KRaft controller voter.
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self._port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self._port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._workdir / "data"),
            # A single replica everywhere, the internal topics included.
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true" if self.auto_create_topics else "false",
            "delete.topic.enable": "true",
            # After a SIGKILL the controller lets the new incarnation register only once the old one's
            # session has expired: 3 s instead of 9 s (heartbeats every 0.5 s, in the same JVM).
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            # Light: few threads, small segments and buffers (the cleaner's 128 MiB default included).
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.index.size.max.bytes": str(1024 * 1024),
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
            "log.retention.hours": "24",
        }
        config.update(self.extra_config)
        return config

    def _write_config(self) -> None:
        lines = [f"{key}={value}" for key, value in self.properties().items()]
        (self.workdir / "server.properties").write_text("\n".join(lines) + "\n")
        # log4j 2 (the broker's backend since Kafka 4.0): everything to stdout, which goes to broker.log.
        (self.workdir / "log4j2.properties").write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.out.type = Console",
                    "appender.out.name = out",
                    "appender.out.target = SYSTEM_OUT",
                    "appender.out.layout.type = PatternLayout",
                    "appender.out.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = info",
                    "rootLogger.appenderRef.out.ref = out",
                    # The config dumps (server.properties is beside the log), the per-request and
                    # per-state-change chatter.
                    "logger.config.name = org.apache.kafka.common.config.AbstractConfig",
                    "logger.config.level = warn",
                    "logger.request.name = kafka.request.logger",
                    "logger.request.level = warn",
                    "logger.state.name = state.change.logger",
                    "logger.state.level = warn",
                    "",
                ]
            )
        )

    def _java_command(self, main_class: str, *args: str, heap: str) -> list[str]:
        return [
            _java(),
            f"-Xmx{heap}",
            "-Xss1m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            str(self.libs / "*"),
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        assert self._cluster_id is not None
        command = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self._cluster_id,
            "--config",
            str(self.workdir / "server.properties"),
            heap="256m",
        )
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise KafkaBrokerError(
                f"formatting the Kafka storage failed (exit {result.returncode}):\n"
                + _log_excerpt(self.log_path)
            )

    def _launch(self) -> None:
        command = self._java_command("kafka.Kafka", str(self.workdir / "server.properties"), heap=self.heap)
        tie_to_parent = not self.detached and sys.platform == "linux"
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()

            def launch() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    command,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if tie_to_parent else None,
                    start_new_session=self.detached,
                )

            self._process = _SPAWNER.spawn(launch) if tie_to_parent else launch()
        if not self.detached:
            _LIVE_BROKERS.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self._terminate(graceful=False)
            raise

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        started = time.monotonic()
        deadline = started + self.startup_timeout
        last_error = "no answer yet"
        while True:
            code = self._process.poll()
            if code is not None:
                raise KafkaBrokerError(
                    f"the Kafka broker exited with code {code} while starting; "
                    f"its log:\n{_log_excerpt(self.log_path)}"
                )
            try:
                brokers = _metadata_brokers(self.host, self.port, timeout=2.0)
                if any(port == self.port for _node, _host, port in brokers):
                    return
                last_error = "the broker is up but not yet unfenced (it lists no live broker)"
            except (OSError, struct.error) as error:
                last_error = f"{type(error).__name__}: {error}"
            if time.monotonic() >= deadline:
                raise KafkaBrokerError(
                    f"the Kafka broker did not answer on {self.bootstrap_servers} within "
                    f"{self.startup_timeout:.0f} s (last: {last_error}); "
                    f"its log:\n{_log_excerpt(self.log_path)}"
                )
            time.sleep(0.1)

    def _terminate(self, *, graceful: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                process.terminate()
                try:
                    process.wait(timeout=self.shutdown_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
            else:
                process.kill()
        process.wait()


# ----------------------------------------------------------------------------------------------- CLI


def _state_file() -> Path:
    return default_cache_root() / "broker.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cli_start(args: argparse.Namespace) -> int:
    state_file = _state_file()
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        if _pid_alive(int(state["pid"])):
            print(f"a broker is already running (pid {state['pid']}): run `stop` first", file=sys.stderr)
            print(f"export KAFKA_BOOTSTRAP_SERVERS={state['bootstrap_servers']}")
            return 1
    # Detached: it outlives this command; `stop` ends it through the state file.
    broker = _broker_from(args, detached=True)
    started = time.monotonic()
    broker.start()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(
        json.dumps(
            {
                "pid": broker.pid,
                "bootstrap_servers": broker.bootstrap_servers,
                "workdir": str(broker.workdir),
                "version": broker.version,
            }
        )
    )
    print(
        f"Kafka {broker.version} is up in {time.monotonic() - started:.1f} s; log: {broker.log_path}",
        file=sys.stderr,
    )
    print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    return 0


def _cli_stop(_args: argparse.Namespace) -> int:
    state_file = _state_file()
    if not state_file.is_file():
        print("no broker started by `start` is recorded", file=sys.stderr)
        return 0
    state = json.loads(state_file.read_text())
    pid = int(state["pid"])
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state["workdir"], ignore_errors=True)
    state_file.unlink()
    print(f"stopped the broker on {state['bootstrap_servers']} (pid {pid})", file=sys.stderr)
    return 0


def _cli_run(args: argparse.Namespace) -> int:
    with _broker_from(args, detached=False) as broker:
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}  (log: {broker.log_path})", flush=True)
        print("Ctrl-C stops it", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.is_running():
                time.sleep(0.5)
    return 0


def _cli_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    version = args.version or os.environ.get("ACTORFLOW_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION
    folder = fetch(version, quiet=not args.verbose)
    jars = len(list(folder.glob("*.jar")))
    print(f"{jars} jars in {folder} ({time.monotonic() - started:.1f} s)")
    return 0


def _broker_from(args: argparse.Namespace, *, detached: bool) -> KafkaBroker:
    return KafkaBroker(
        version=args.version,
        port=args.port,
        auto_create_topics=not args.no_auto_create_topics,
        detached=detached,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--version",
        help=f"the Kafka release (default $ACTORFLOW_KAFKA_VERSION, else {DEFAULT_KAFKA_VERSION})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser(
        "fetch", parents=[common], help="resolve the broker's jars into the cache"
    )
    fetch_parser.add_argument("--verbose", action="store_true", help="show Maven's output")
    fetch_parser.set_defaults(handler=_cli_fetch)
    for name, handler, text in [
        ("start", _cli_start, "start a broker in the background (see `stop`)"),
        ("run", _cli_run, "run a broker in the foreground until Ctrl-C"),
    ]:
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("--port", type=int, help="the client port (default: a free one)")
        sub.add_argument("--no-auto-create-topics", action="store_true")
        sub.set_defaults(handler=handler)
    commands.add_parser("stop", help="stop the broker that `start` started").set_defaults(handler=_cli_stop)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KafkaBrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
