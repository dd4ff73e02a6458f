"""The ``actorflow`` command: running a flow, settings (flags > env > file), plans, checkpoint lists."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from actorflow import Flow
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.restart import ExponentialBackoffRestart, FixedDelayRestart, NoRestart
from actorflow.cli.config import resolve
from actorflow.cli.daemon import apply_config
from actorflow.cli.errors import UsageError
from actorflow.cli.parsing import duration_ms, restart_strategy

FLOWS = textwrap.dedent(
    """
    from actorflow import Flow

    def build(parallelism=1):
        flow = Flow("tiny", parallelism=parallelism)
        flow.from_iterable(range(5)).map(lambda n: n * 10, name="times-ten").print(prefix="out: ")
        return flow

    flow = build()
    wide = build(3)

    def make():
        return build()

    async def make_async():
        return build()

    not_a_flow = 42

    def with_arguments(argv):
        flow = Flow("arguments")
        flow.from_iterable(argv).print(prefix="arg: ")
        return flow

    failing = Flow("failing")
    failing.from_iterable(range(5)).map(lambda n: 1 // (n - 3), name="divide").print()
    """
)

EXPECTED = [f"out: {n * 10}" for n in range(5)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tiny_flows.py").write_text(FLOWS)
    return tmp_path


ROOT = Path(__file__).resolve().parent.parent


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with ``extra``, and this checkout first on the path: the command under test
    is this tree's, whatever another checkout installed meanwhile."""
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def actorflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=environment(env),
    )


def lifecycle(stderr: str) -> list[str]:
    """The messages of the NOTICE lines of ``stderr`` (the job's life cycle), in order."""
    return [line.partition("actorflow.daemon: ")[2] for line in stderr.splitlines() if " NOTICE " in line]


def test_run_a_file(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = actorflow("run", str(project / "tiny_flows.py"), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED
    assert lifecycle(done.stderr) == [
        "started tiny (no checkpoints, parallelism 1)",
        "tiny done: 5 records read",
    ]
    assert len(done.stderr.splitlines()) == 2


def test_a_file_may_define_dataclasses_and_keep_them_in_checkpointed_state(tmp_path: Path) -> None:
    """The file is a module in ``sys.modules`` while it runs: a dataclass (which looks its module
    up there) works, and so does pickling its instances into a checkpoint."""
    (tmp_path / "typed.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from actorflow import Flow
            from actorflow.operators.process import KeyedProcessFunction
            from actorflow.state.descriptors import ValueStateDescriptor

            @dataclass
            class Total:
                card: str
                amount: int

            class Sum(KeyedProcessFunction):
                def open(self, ctx):
                    self.total = ctx.get_state(ValueStateDescriptor("total"))

                def process_element(self, value, ctx, out):
                    card, amount = value
                    total = self.total.value() or Total(card, 0)
                    total = Total(card, total.amount + amount)
                    self.total.update(total)
                    out.collect(total)

            flow = Flow("typed")
            flow.from_iterable([("a", 1), ("b", 2), ("a", 3)]).key_by(lambda pair: pair[0]).process(
                Sum()
            ).print(prefix="out: ")
            """
        )
    )
    done = actorflow("run", "typed.py", "--checkpoint-dir", str(tmp_path / "checkpoints"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        "out: Total(card='a', amount=1)",
        "out: Total(card='a', amount=4)",
        "out: Total(card='b', amount=2)",
    ]
    assert list((tmp_path / "checkpoints").iterdir()), "no checkpoint of the state was written"


def test_run_a_file_with_an_attribute(project: Path) -> None:
    done = actorflow("run", "tiny_flows.py:wide", cwd=project)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == EXPECTED


@pytest.mark.parametrize("attribute", ["flow", "make", "make_async"])
def test_run_a_module_attribute(project: Path, attribute: str) -> None:
    done = actorflow("run", f"tiny_flows:{attribute}", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED


def test_the_console_script_runs_a_file(project: Path) -> None:
    script = Path(sys.executable).parent / "actorflow"
    if not script.exists():
        pytest.skip("the actorflow console script is not installed next to this interpreter")
    done = subprocess.run(
        [str(script), "run", "tiny_flows.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=environment(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED


def cause_of(done: subprocess.CompletedProcess[str]) -> str:
    """The last line of a failed run's stderr, checking that only life-cycle lines came before it
    and no traceback at all."""
    assert "Traceback" not in done.stderr, done.stderr
    *before, last = done.stderr.splitlines()
    assert all(" NOTICE " in line for line in before), done.stderr
    return last + "\n"


def _line_of(text: str, source: str) -> int:
    return next(number for number, line in enumerate(source.splitlines(), 1) if text in line)


def test_a_failing_flow_exits_1_with_one_line_naming_operator_record_and_cause(project: Path) -> None:
    done = actorflow("run", "tiny_flows:failing", cwd=project)
    assert done.returncode == 1
    line = _line_of("1 // (n - 3)", FLOWS)
    assert cause_of(done) == (
        "actorflow: operator divide[1/1] failed on record 3: ZeroDivisionError: integer division or "
        f"modulo by zero (tiny_flows.py:{line})\n"
    )


def test_the_traceback_of_a_failure_comes_at_log_level_debug_before_the_line(project: Path) -> None:
    done = actorflow("run", "tiny_flows:failing", "--log-level", "debug", cwd=project)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "actorflow: raised in operator divide[1/1] on record 3" in done.stderr  # the note
    assert done.stderr.splitlines()[-1].startswith("actorflow: operator divide[1/1] failed on record 3: ")


def test_a_missing_attribute_exits_with_a_clear_message(project: Path) -> None:
    done = actorflow("run", "tiny_flows:nope", cwd=project)
    assert done.returncode != 0
    assert "tiny_flows has no attribute 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py", "no such file: missing.py"),
        ("tiny_flows:not_a_flow", "is not a Flow (got int)"),
    ],
)
def test_a_bad_target_exits_with_a_clear_message(project: Path, target: str, message: str) -> None:
    done = actorflow("run", target, cwd=project)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_attribute_exits_2_for_bad_usage(project: Path) -> None:
    assert actorflow("run", "tiny_flows:nope", cwd=project).returncode == 2


def test_an_unknown_command_is_bad_usage(project: Path) -> None:
    done = actorflow("fly", "tiny_flows", cwd=project)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_plan_prints_the_chains(project: Path) -> None:
    one = actorflow("plan", "tiny_flows.py", cwd=project)
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == ["[source -> times-ten -> print] x1"]

    wide = actorflow("plan", "tiny_flows:wide", cwd=project)
    assert wide.returncode == 0, wide.stderr
    assert wide.stdout.splitlines() == [
        "[source] x1",
        "[times-ten -> print] x3 <- rebalance from [source]",
    ]


# -- settings: flags > environment > file > defaults ---------------------------------------------


def write_config(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_each_setting_comes_from_the_first_of_flag_env_file_default(tmp_path: Path) -> None:
    config_file = write_config(
        tmp_path / "actorflow.toml",
        """
        parallelism = 2
        checkpoint_interval_ms = 1000
        log_format = "json"
        restart_strategy = "fixed:3:1s"
        """,
    )
    config = resolve(
        {"config": str(config_file), "parallelism": "8"},
        {
            "ACTORFLOW_PARALLELISM": "4",
            "ACTORFLOW_CHECKPOINT_INTERVAL_MS": "500",
            "ACTORFLOW_LOG_LEVEL": "",
        },
    )
    assert (config.parallelism, config.origins["parallelism"]) == (8, "flag --parallelism")
    assert (config.checkpoint_interval_ms, config.origins["checkpoint_interval_ms"]) == (
        500,
        "env ACTORFLOW_CHECKPOINT_INTERVAL_MS",
    )
    assert (config.log_format, config.origins["log_format"]) == ("json", f"file {config_file}")
    assert config.restart_strategy == "fixed:3:1s"
    # An empty variable counts as unset.
    assert (config.log_level, config.origins["log_level"]) == ("notice", "default")
    assert (config.checkpoint_dir, config.origins["checkpoint_dir"]) == (None, "default")
    assert config.config_file == config_file and config.origins["config_file"] == "flag --config"


def test_the_file_may_use_tables_and_its_relative_paths_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    config_file = write_config(
        tmp_path / "conf" / "actorflow.toml",
        """
        [checkpoint]
        dir = "state"
        timeout_ms = 9000

        [http]
        port = 8081
        token = "s3cret"
        """,
    )
    config = resolve({}, {"ACTORFLOW_CONFIG": str(config_file)})
    assert config.checkpoint_dir == (tmp_path / "conf" / "state").resolve()
    assert config.checkpoint_timeout_ms == 9000
    assert (config.http_port, config.http_token) == (8081, "s3cret")
    assert config.origins["config_file"] == "env ACTORFLOW_CONFIG"
    # From a flag or the environment a relative path stays relative to the working directory.
    assert resolve({"checkpoint_dir": "here"}, {}).checkpoint_dir == Path("here")


@pytest.mark.parametrize(
    ("flags", "environ", "file_text", "message"),
    [
        ({"parallelism": "0"}, {}, None, "parallelism (flag --parallelism): expected at least 1, got 0"),
        (
            {},
            {"ACTORFLOW_HTTP_PORT": "http"},
            None,
            "http_port (env ACTORFLOW_HTTP_PORT): expected a whole number",
        ),
        ({}, {}, "paralelism = 3\n", "unknown setting(s) paralelism"),
        ({}, {}, "parallelism = true\n", "expected a string or a number, got True"),
        ({}, {}, "log_format = 'xml'\n", "log_format (file "),
        ({"restart_strategy": "fixed:many"}, {}, None, "bad restart strategy 'fixed:many'"),
        ({}, {}, "parallelism = \n", "is not valid TOML"),
        ({"config": "missing.toml"}, {}, None, "cannot read the configuration file missing.toml"),
    ],
)
def test_a_wrong_setting_names_itself_and_its_origin(
    tmp_path: Path, flags: dict[str, str], environ: dict[str, str], file_text: str | None, message: str
) -> None:
    if file_text is not None:
        flags = {**flags, "config": str(write_config(tmp_path / "actorflow.toml", file_text))}
    with pytest.raises(UsageError) as caught:
        resolve(flags, environ)
    assert message in str(caught.value)


def test_durations_and_restart_strategies_parse() -> None:
    assert [duration_ms(text) for text in ("750", "750ms", "3s", "2m", "1h")] == [
        750,
        750,
        3_000,
        120_000,
        3_600_000,
    ]
    assert restart_strategy("none") == NoRestart()
    assert restart_strategy("fixed:5") == FixedDelayRestart(5, 0)
    assert restart_strategy("FIXED:2:250") == FixedDelayRestart(2, 250)
    assert restart_strategy("exponential") == ExponentialBackoffRestart()
    assert restart_strategy("exponential:100ms:10s:3:7") == ExponentialBackoffRestart(100, 10_000, 3.0, 7)
    for bad in ("sometimes", "fixed", "fixed:1:2:3", "exponential:1s:1ms", "none:1", "fixed:-1"):
        with pytest.raises(ValueError, match="bad restart strategy"):
            restart_strategy(bad)


def _checkpointing_flow(tmp_path: Path) -> Flow:
    flow = Flow("own", parallelism=2)
    flow.from_iterable(range(3)).print()
    flow.enable_checkpointing(tmp_path / "own", interval_ms=5_000, timeout_ms=7_000, min_pause_ms=100)
    flow.set_restart_strategy(FixedDelayRestart(1, 10))
    return flow


def test_settings_given_override_the_flows_own_and_settings_not_given_leave_them(tmp_path: Path) -> None:
    untouched = _checkpointing_flow(tmp_path)
    apply_config(untouched, resolve({}, {}))
    assert untouched.parallelism == 2
    assert isinstance(untouched.checkpoint_storage, FileSystemStorage)
    assert untouched.checkpoint_storage.directory == tmp_path / "own"
    assert untouched.checkpoint_config.interval_ms == 5_000
    assert untouched._restart == FixedDelayRestart(1, 10)

    interval_only = _checkpointing_flow(tmp_path)
    apply_config(interval_only, resolve({"checkpoint_interval_ms": "250", "parallelism": "3"}, {}))
    assert interval_only.parallelism == 3
    assert interval_only.checkpoint_storage.directory == tmp_path / "own"  # type: ignore[union-attr]
    config = interval_only.checkpoint_config
    assert (config.interval_ms, config.timeout_ms, config.min_pause_ms) == (250, 7_000, 100)

    moved = _checkpointing_flow(tmp_path)
    apply_config(moved, resolve({"checkpoint_dir": str(tmp_path / "cli"), "restart_strategy": "none"}, {}))
    assert moved.checkpoint_storage.directory == tmp_path / "cli"  # type: ignore[union-attr]
    assert moved.checkpoint_config.interval_ms == 5_000
    assert moved._restart == NoRestart()


def test_the_state_backend_comes_from_a_table_of_the_file_and_a_flag_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACTORFLOW_STATE_BACKEND", raising=False)
    config_file = write_config(
        tmp_path / "actorflow.toml",
        """
        [state]
        backend = "rocksdb"
        dir = "rocks"
        cache_mb = 8
        """,
    )
    config = resolve({"config": str(config_file)}, {})
    assert (config.state_backend, config.state_dir, config.state_cache_mb) == (
        "rocksdb",
        (tmp_path / "rocks").resolve(),
        8,
    )
    flow = Flow("state")
    assert flow.state_backend.kind == "heap"
    apply_config(flow, config)
    assert (flow.state_backend.kind, flow.state_backend.path, flow.state_backend.cache_mb) == (
        "rocksdb",
        str((tmp_path / "rocks").resolve()),
        8,
    )
    # A flag wins over the file; the flow's own RocksDB settings stay when only the kind is given.
    own = Flow("own").set_state_backend("rocksdb", path=tmp_path / "own", cache_mb=2)
    apply_config(own, resolve({"state_backend": "rocksdb"}, {}))
    assert (own.state_backend.path, own.state_backend.cache_mb) == (str(tmp_path / "own"), 2)
    apply_config(own, resolve({"state_backend": "heap"}, {}))
    assert own.state_backend.kind == "heap"


def test_heap_incremental_is_the_heap_with_incremental_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTORFLOW_STATE_BACKEND", raising=False)
    flow = Flow("incremental")
    apply_config(flow, resolve({"state_backend": "heap-incremental"}, {}))
    assert (flow.state_backend.kind, flow.state_backend.incremental) == ("heap", True)
    apply_config(flow, resolve({"state_backend": "heap"}, {}))
    assert (flow.state_backend.kind, flow.state_backend.incremental) == ("heap", False)
    monkeypatch.setenv("ACTORFLOW_STATE_BACKEND", "heap-incremental")
    assert (Flow("env").state_backend.kind, Flow("env").state_backend.incremental) == ("heap", True)


def test_rocksdb_settings_with_the_heap_backend_are_bad_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTORFLOW_STATE_BACKEND", raising=False)
    with pytest.raises(UsageError, match="state_cache_mb need the rocksdb state backend"):
        apply_config(Flow("heap"), resolve({"state_cache_mb": "16"}, {}))
    with pytest.raises(UsageError, match=r"state_backend \(flag --state-backend\): expected one of heap"):
        resolve({"state_backend": "lmdb"}, {})


def test_checkpoint_timing_without_a_directory_is_bad_usage(project: Path) -> None:
    done = actorflow("run", "tiny_flows.py", "--checkpoint-interval-ms", "100", cwd=project)
    assert done.returncode == 2
    assert "checkpoint_interval_ms need a checkpoint directory" in done.stderr
    assert done.stdout == ""


def test_a_savepoint_that_is_not_one_is_bad_usage(project: Path) -> None:
    done = actorflow(
        "run", "tiny_flows.py", "--checkpoint-dir", "c", "--from-savepoint", "nowhere", cwd=project
    )
    assert done.returncode == 2
    assert "nowhere is not a complete savepoint or checkpoint" in done.stderr


def test_config_prints_the_effective_settings_and_their_origins(project: Path) -> None:
    write_config(project / "actorflow.toml", 'log_level = "info"\nparallelism = 2\nhttp_token = "s3cret"\n')
    done = actorflow(
        "config",
        "--config",
        "actorflow.toml",
        "-p",
        "6",
        "--format",
        "json",
        cwd=project,
        env={"ACTORFLOW_LOG_LEVEL": "error", "ACTORFLOW_CHECKPOINT_DIR": "chk"},
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["config_file"] == "actorflow.toml"
    settings = shown["settings"]
    assert settings["parallelism"] == {"value": 6, "origin": "flag --parallelism"}
    assert settings["log_level"] == {"value": "error", "origin": "env ACTORFLOW_LOG_LEVEL"}
    assert settings["checkpoint_dir"] == {"value": "chk", "origin": "env ACTORFLOW_CHECKPOINT_DIR"}
    assert settings["http_token"] == {"value": "***", "origin": "file actorflow.toml"}  # never shown
    assert settings["http_port"] == {"value": None, "origin": "default"}
    assert settings["log_format"] == {"value": "text", "origin": "default"}


def test_config_as_toml_can_be_read_back(project: Path) -> None:
    done = actorflow("config", "--parallelism", "3", "--restart-strategy", "fixed:2:1s", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "parallelism = 3  # flag --parallelism" in done.stdout.splitlines()
    assert "# http_port is not set: no HTTP server" in done.stdout.splitlines()
    saved = project / "saved.toml"
    saved.write_text(done.stdout)
    assert tomllib.loads(done.stdout)["restart_strategy"] == "fixed:2:1s"
    again = resolve({"config": str(saved)}, {})
    assert (again.parallelism, again.restart_strategy, again.log_level) == (3, "fixed:2:1s", "notice")


def test_a_wrong_setting_exits_2(project: Path) -> None:
    done = actorflow("config", cwd=project, env={"ACTORFLOW_LOG_FORMAT": "xml"})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "actorflow: log_format (env ACTORFLOW_LOG_FORMAT): expected one of text, json; got 'xml'"
    )


def test_help_documents_the_exit_codes(project: Path) -> None:
    done = actorflow("--help", cwd=project)
    assert done.returncode == 0
    for code in ("0:", "1:", "2:", "130 / 143:", "141:"):
        assert f"\n  {code}" in done.stdout


# -- plan formats ----------------------------------------------------------------------------------

PLANNED = textwrap.dedent(
    """
    from actorflow import Flow, KeyedProcessFunction, OutputTag

    SMALL = OutputTag("small")

    class Split(KeyedProcessFunction):
        def process_element(self, value, ctx, out):
            if value < 3:
                ctx.output(SMALL, value)
            else:
                out.collect(value)

    flow = Flow("planned", parallelism=2)
    numbers = flow.from_iterable(range(10), name='say "numbers"')
    split = numbers.key_by(lambda n: n % 2).process(Split(), name="split")
    split.map(str, name="show").print()
    split.get_side_output(SMALL).rebalance().print(name="small")
    """
)


def parse_dot(text: str) -> tuple[str, set[str], list[tuple[str, str, str]]]:
    """A small checker of the dot the command writes: balanced braces, statements ended by ``;``,
    edges only between declared nodes. Returns the graph's name, its nodes and its edges."""
    lines = text.splitlines()
    header = re.fullmatch(r'digraph "((?:[^"\\]|\\.)*)" \{', lines[0])
    assert header, lines[0]
    assert lines[-1] == "}"
    depth = 0
    nodes: set[str] = set()
    edges: list[tuple[str, str, str]] = []
    for line in lines:
        stripped = line.strip()
        depth += stripped.endswith("{") - (stripped == "}")
        if stripped.endswith("{") or stripped == "}":
            continue
        assert stripped.endswith(";"), line
        assert stripped.count('"') % 2 == stripped.count('\\"') % 2, line  # quotes close
        node = re.fullmatch(r'(n\d+) \[label="(?:[^"\\]|\\.)*"\];', stripped)
        edge = re.fullmatch(r'(n\d+) -> (n\d+) \[(?:style=dashed, )?label="((?:[^"\\]|\\.)*)"\];', stripped)
        if node:
            nodes.add(node.group(1))
        elif edge:
            edges.append((edge.group(1), edge.group(2), edge.group(3)))
    assert depth == 0
    assert all(a in nodes and b in nodes for a, b, _ in edges)
    return header.group(1), nodes, edges


def test_plan_as_dot(project: Path) -> None:
    (project / "planned.py").write_text(PLANNED)
    done = actorflow("plan", "planned.py", "--format", "dot", cwd=project)
    assert done.returncode == 0, done.stderr
    name, nodes, edges = parse_dot(done.stdout)
    assert name == "planned"
    assert len(nodes) == 6  # the side output is a node of its own
    labels = sorted(label for _, _, label in edges)
    assert labels == ["chained", "forward", "forward side small", "hash", "rebalance"]
    assert 'label="say \\"numbers\\" x1";' in done.stdout  # the chain's title, quotes escaped
    assert 'label="show -> print x2";' in done.stdout


def test_plan_as_mermaid(project: Path) -> None:
    (project / "planned.py").write_text(PLANNED)
    done = actorflow("plan", "planned.py", "--format", "mermaid", cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    opened = [line for line in lines if line.strip().startswith("subgraph ")]
    assert len(opened) == sum(line.strip() == "end" for line in lines) == 5  # one per chain
    declared = set(re.findall(r"^\s+(n\d+)\[", done.stdout, re.MULTILINE))
    linked = re.findall(r"^\s+(n\d+) (?:-->\|\"[^\"]*\"\||-\.->) (n\d+)$", done.stdout, re.MULTILINE)
    assert len(linked) == 5 and all(a in declared and b in declared for a, b in linked)
    assert '["say #quot;numbers#quot;"]' in done.stdout
    assert '-->|"forward side small"|' in done.stdout


def test_plan_takes_the_parallelism_from_the_settings(project: Path) -> None:
    flag = actorflow("plan", "tiny_flows.py", "-p", "3", cwd=project)
    assert flag.stdout.splitlines() == ["[source] x1", "[times-ten -> print] x3 <- rebalance from [source]"]
    env = actorflow("plan", "tiny_flows:wide", cwd=project, env={"ACTORFLOW_PARALLELISM": "1"})
    assert env.stdout.splitlines() == ["[source -> times-ten -> print] x1"]


# -- checkpoints list ------------------------------------------------------------------------------


def test_checkpoints_list_reads_a_directory(project: Path) -> None:
    storage = FileSystemStorage(project / "chk", retain=5)
    for checkpoint_id, kind in ((3, "checkpoint"), (4, "savepoint")):
        storage.write_part(checkpoint_id, "source/0", b"x" * 10, kind=kind)
        storage.write_part(checkpoint_id, "count/0", b"y" * 1500, kind=kind)
        storage.commit(checkpoint_id, {"flow": "demo"}, kind=kind)
    storage.write_part(5, "source/0", b"incomplete")  # no manifest: not listed

    done = actorflow("checkpoints", "list", "--checkpoint-dir", "chk", cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "chk: no job running"
    assert lines[1].split() == ["ID", "KIND", "CREATED", "SIZE", "PARTS", "PATH"]
    assert [line.split()[:2] + line.split()[3:] for line in lines[2:]] == [
        ["3", "checkpoint", "1,510", "B", "2", "chk/chk-0000000003"],
        ["4", "savepoint", "1,510", "B", "2", "chk/sp-0000000004"],
    ]

    as_json = json.loads(
        actorflow("checkpoints", "list", "--checkpoint-dir", "chk", "--format", "json", cwd=project).stdout
    )
    assert [
        (row["id"], row["kind"], row["size_bytes"], row["parts"]) for row in as_json["checkpoints"]
    ] == [
        (3, "checkpoint", 1510, 2),
        (4, "savepoint", 1510, 2),
    ]
    assert as_json["checkpoints"][0]["metadata"] == {"flow": "demo"}
    assert as_json["running"] is None


def test_checkpoints_list_of_a_missing_directory_is_bad_usage(project: Path) -> None:
    done = actorflow("checkpoints", "list", "--checkpoint-dir", "nowhere", cwd=project)
    assert done.returncode == 2
    assert done.stderr.strip() == "actorflow: no such checkpoint directory: nowhere"
    assert not (project / "nowhere").exists()


def test_plan_does_not_create_the_checkpoint_directory(project: Path) -> None:
    done = actorflow("plan", "tiny_flows.py", cwd=project, env={"ACTORFLOW_CHECKPOINT_DIR": "state"})
    assert done.returncode == 0, done.stderr
    assert not (project / "state").exists()


# -- arguments for the flow ------------------------------------------------------------------------


def test_arguments_actorflow_does_not_know_go_to_the_flow_function(project: Path) -> None:
    done = actorflow(
        "run", "tiny_flows.py:with_arguments", "--limit", "3", "--log-level", "warning", "x", cwd=project
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["arg: --limit", "arg: 3", "arg: x"]
    assert done.stderr == ""  # --log-level was actorflow's, wherever it stood: no life-cycle lines


def test_after_a_double_dash_every_argument_is_the_flows(project: Path) -> None:
    done = actorflow("run", "tiny_flows.py:with_arguments", "--", "--parallelism", "2", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["arg: --parallelism", "arg: 2"]


def test_arguments_for_a_flow_object_are_bad_usage(project: Path) -> None:
    done = actorflow("run", "tiny_flows.py", "--limit", "3", cwd=project)
    assert done.returncode == 2
    assert "tiny_flows.py takes no arguments (got --limit 3)" in done.stderr
    assert done.stdout == ""


def test_other_commands_take_no_unknown_arguments(project: Path) -> None:
    done = actorflow("config", "--limit", "3", cwd=project)
    assert done.returncode == 2
    assert "unrecognized arguments: --limit 3" in done.stderr


# -- a new user's first targets (issue 12, items 1 to 3) -------------------------------------------

SCRIPT = textwrap.dedent(
    """
    from actorflow import Flow

    job = Flow("script", parallelism=2)
    job.from_iterable(range(5)).map(lambda n: n * 10, name="times-ten").print(prefix="out: ")
    job.execute()  # as the README's flow: run when the file is run with python
    """
)


def test_a_file_that_executes_its_flow_when_imported_runs_once_under_the_command(project: Path) -> None:
    (project / "script.py").write_text(SCRIPT.replace("job", "flow"))
    done = actorflow("run", "script.py", "-p", "1", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED  # once, not twice, and in order: the command's -p 1
    assert lifecycle(done.stderr) == [
        "started script (no checkpoints, parallelism 1)",
        "script done: 5 records read",
    ]
    planned = actorflow("plan", "script.py", "-p", "3", cwd=project)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines() == [
        "[source] x1",
        "[times-ten -> print] x3 <- rebalance from [source]",
    ]
    # Run with python, the file still runs its flow itself.
    alone = subprocess.run(
        [sys.executable, "script.py"], cwd=project, capture_output=True, text=True, timeout=30,
        check=False, env=environment(),
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert sorted(alone.stdout.splitlines()) == EXPECTED


def test_the_one_flow_a_file_executes_is_its_target_whatever_its_name(project: Path) -> None:
    (project / "script.py").write_text(SCRIPT)
    done = actorflow("run", "script.py", cwd=project)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == EXPECTED
    (project / "two.py").write_text(SCRIPT + SCRIPT.replace("job", "other"))
    two = actorflow("run", "two.py", cwd=project)
    assert two.returncode == 2
    assert two.stderr == (
        "actorflow: two.py has no attribute 'flow' (it executes 2 flows: name the one to run)\n"
    )
    assert actorflow("run", "two.py:other", cwd=project).returncode == 0


def test_a_main_function_that_executes_a_flow_stands_for_it(project: Path) -> None:
    (project / "with_main.py").write_text(
        SCRIPT.replace("job = ", "def main():\n    job = ").replace("\njob.", "\n    job.")
    )
    done = actorflow("run", "with_main.py:main", cwd=project)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == EXPECTED


def test_execute_inside_a_running_event_loop_says_to_await_run() -> None:
    import asyncio

    from actorflow.errors import PlanError

    async def main() -> None:
        flow = Flow("inside")
        flow.from_iterable([1]).collect()
        with pytest.raises(PlanError, match=r"cannot run inside a running event loop; await flow.run\(\)"):
            flow.execute()

    asyncio.run(main())


def test_the_readme_guards_its_execute() -> None:
    readme = (ROOT / "README.md").read_text()
    flow_section = readme.partition("## A flow")[2].partition("\n## ")[0]
    assert 'if __name__ == "__main__":\n    flow.execute()' in flow_section


def test_a_module_in_the_working_directory_runs_also_without_it_on_the_path(project: Path) -> None:
    # ``-P`` keeps the working directory off sys.path, as the installed console script does.
    done = subprocess.run(
        [sys.executable, "-P", "-m", "actorflow", "run", "tiny_flows:flow"],
        cwd=project, capture_output=True, text=True, timeout=30, check=False, env=environment(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED


def test_version() -> None:
    import actorflow as package

    done = actorflow("--version", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"actorflow {package.__version__}\n"


def test_a_function_that_is_not_a_flow_is_bad_usage_in_one_line() -> None:
    done = actorflow("run", "examples/windowed_count.py:describe", cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr == (
        "actorflow: examples/windowed_count.py:describe is not a Flow or a function that returns one: "
        "describe() cannot be called with no arguments (missing a required argument: 'result')\n"
    )


# -- errors a user reads (issue 12, items 4 and 5) -------------------------------------------------

READER = textwrap.dedent(
    """
    from actorflow import Flow, WatermarkStrategy

    flow = Flow("reader")
    (
        flow.from_json_lines(
            "input.jsonl", watermarks=WatermarkStrategy.bounded_out_of_orderness(0, lambda tx: tx["ts"])
        )
        .map(lambda tx: tx["amount"] * 2, name="double")
        .print()
    )
    """
)


@pytest.fixture
def reader(tmp_path: Path) -> Path:
    (tmp_path / "reader.py").write_text(READER)
    return tmp_path


def test_a_bad_line_ends_the_run_with_file_line_and_cause_only(reader: Path) -> None:
    good = [f'{{"ts": {n}, "amount": {n}}}\n' for n in range(5)]
    (reader / "input.jsonl").write_text("".join(good) + '{"ts": 5, "amount": \n' + good[0])
    done = actorflow("run", "reader.py", cwd=reader)
    assert done.returncode == 1
    assert (
        cause_of(done) == "actorflow: input.jsonl:6: not valid JSON (unexpected end of data at column 22)\n"
    )
    debug = actorflow("run", "reader.py", "--log-level", "debug", cwd=reader)
    assert "Traceback (most recent call last)" in debug.stderr
    assert "During handling of the above exception" not in debug.stderr  # no chained fast-path error
    assert debug.stderr.splitlines()[-1] == (
        "actorflow: input.jsonl:6: not valid JSON (unexpected end of data at column 22)"
    )


def test_a_byte_that_is_not_utf8_is_named_as_such(reader: Path) -> None:
    (reader / "input.jsonl").write_bytes(b'{"ts": 1, "amount": 1}\n{"ts": 2, "note": "caf\xe9"}\n')
    done = actorflow("run", "reader.py", cwd=reader)
    assert done.returncode == 1
    assert cause_of(done) == "actorflow: input.jsonl:2: not UTF-8 at byte 23 of the line (b'\\xe9')\n"


def test_a_missing_field_names_the_record(reader: Path) -> None:
    (reader / "input.jsonl").write_text('{"ts": 1, "amount": 1}\n{"ts": 2, "amont": 5}\n')
    done = actorflow("run", "reader.py", cwd=reader)
    assert done.returncode == 1
    line = _line_of('tx["amount"] * 2', READER)
    assert cause_of(done) == (
        "actorflow: operator double[1/1] failed on record {'ts': 2, 'amont': 5}: KeyError: 'amount' "
        f"(reader.py:{line})\n"
    )


def test_a_missing_input_file_is_bad_usage_before_the_job_starts(reader: Path) -> None:
    done = actorflow("run", "reader.py", "--checkpoint-dir", "state", cwd=reader)
    assert done.returncode == 2
    assert done.stderr == "actorflow: input.jsonl: no such file\n"
    assert not (reader / "state" / "daemon").exists()  # nothing started


def test_an_empty_input_says_0_records(reader: Path) -> None:
    (reader / "input.jsonl").write_text("")
    done = actorflow("run", "reader.py", cwd=reader)
    assert done.returncode == 0, done.stderr
    assert "input.jsonl: 0 records (the file is empty)" in done.stderr


def test_an_event_time_beyond_64_bits_is_a_clear_error(reader: Path) -> None:
    (reader / "input.jsonl").write_text(
        '{"ts": 1, "amount": 1}\n{"ts": 123456789012345678901234, "amount": 2}\n'
    )
    done = actorflow("run", "reader.py", cwd=reader)
    assert done.returncode == 1
    assert cause_of(done) == (
        "actorflow: input.jsonl:2: the event time 1.2345678901234569e+23 is out of range "
        "(epoch ms within 64 bits)\n"
    )


# -- the examples that need an extra say which (issue 12, item 11) ---------------------------------


@pytest.mark.parametrize(
    ("example", "missing", "message"),
    [
        ("web_service", "aiohttp", "examples/web_service.py needs aiohttp: pip install 'actorflow[web]'"),
        (
            "analytics",
            "aiohttp",
            "examples/analytics.py needs aiohttp and prometheus-client: pip install 'actorflow[web]'",
        ),
        ("etl", "aiokafka", "examples/etl.py needs aiokafka: pip install 'actorflow[kafka]'"),
    ],
)
def test_an_example_without_its_extra_prints_the_install_command(
    example: str, missing: str, message: str
) -> None:
    # As if the package were not installed: importing it fails, as in a fresh environment.
    script = (
        f"import runpy, sys; sys.modules[{missing!r}] = None; sys.path.insert(0, 'examples'); "
        f"sys.argv = ['examples/{example}.py']; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30,
        check=False, env=environment(),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == message + "\n"


def test_http_port_without_the_web_extra_is_bad_usage_naming_it(project: Path) -> None:
    script = (
        "import sys; sys.modules['aiohttp'] = None; from actorflow.cli.main import main; "
        "sys.exit(main(['run', 'tiny_flows.py', '--http-port', '0']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=30,
        check=False, env=environment(),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("actorflow: http_port needs the web extra (pip install 'actorflow[web]')")


def test_the_readme_says_the_dashboard_needs_the_web_extra() -> None:
    readme = (ROOT / "README.md").read_text()
    daemon_section = readme.partition("## Running it as a daemon")[2].partition("\n## ")[0]
    assert "pip install 'actorflow[web]'" in daemon_section


# -- docs that say what is true (issue 12, item 15) ------------------------------------------------


@pytest.mark.parametrize(
    ("document", "stale"),
    [
        ("docs/kafka.md", "does not handle SIGTERM yet"),
        ("README.md", "per key\n  group"),
        ("README.md", "cut by key group"),
        ("docs/architecture.md", "shared/"),
        ("docs/architecture.md", "DESIGN.md"),
        ("docs/architecture.md", "BENCHMARK.md"),
        ("docs/architecture.md", "issue"),
        ("docs/architecture.md", "to 1.5 s"),
        ("README.md", "The others read `examples/data/transactions.jsonl`"),
    ],
)
def test_the_docs_no_longer_say(document: str, stale: str) -> None:
    assert stale not in (ROOT / document).read_text()


def test_the_readme_runs_with_actorflow_run_only_the_examples_that_can() -> None:
    readme = (ROOT / "README.md").read_text()
    said = readme.partition("## Examples")[2].partition("\n## ")[0]
    runnable = re.search(r"\n(.*?) read\n`examples/data/transactions.jsonl`", said)
    assert runnable is not None
    for name in re.findall(r"`(\w+)\.py`", runnable.group(1)):
        assert actorflow("plan", f"examples/{name}.py", cwd=ROOT).returncode == 0, name
    assert actorflow("plan", "examples/analytics.py", cwd=ROOT).returncode == 2  # a program of its own
