"""The settings of the ``actorflow`` command, from flags, ``ACTORFLOW_*`` variables and a TOML file.

Every setting has one key. The TOML file uses it as is (``checkpoint_dir = "state"``) or split at
its first underscore into a table (``[checkpoint]`` then ``dir = "state"``); the environment upper-cases
it behind ``ACTORFLOW_`` (``ACTORFLOW_CHECKPOINT_DIR``); the flag has dashes
(``--checkpoint-dir``). A value comes from the first of: flag, environment, file, default. The file is
``--config FILE``, else ``$ACTORFLOW_CONFIG``; relative paths in it are relative to the file.

>>> config = resolve({"parallelism": "4"}, {"ACTORFLOW_PARALLELISM": "2", "ACTORFLOW_LOG_LEVEL": "INFO"})
>>> config.parallelism, config.origins["parallelism"]
(4, 'flag --parallelism')
>>> config.log_level, config.origins["log_level"]
('info', 'env ACTORFLOW_LOG_LEVEL')
>>> config.checkpoint_dir, config.origins["checkpoint_dir"]
(None, 'default')
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from actorflow.cli import parsing
from actorflow.cli.errors import UsageError

__all__ = ["OPTIONS", "Config", "Option", "add_arguments", "flags_of", "resolve"]

ENV_PREFIX = "ACTORFLOW_"
CONFIG_ENV = "ACTORFLOW_CONFIG"


def _restart_spec(value: str) -> str:
    parsing.restart_strategy(value)  # validate now, so a typo fails before the flow is loaded
    return value.strip().lower()


def _path(value: str) -> Path:
    return Path(parsing.text(value))


def _workers(value: str) -> int:
    """A number of worker processes, or ``auto``: one per core."""
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        return parsing.integer(1)(value)
    except ValueError as error:
        raise ValueError(f"{error} (or auto)") from None


@dataclass(frozen=True)
class Option:
    """One setting: its key, how its text is parsed, and what it means."""

    key: str
    parse: Callable[[str], Any]
    help: str
    #: What happens when nobody sets it (shown by ``actorflow config``).
    unset: str = ""
    default: Any = None
    metavar: str | None = None
    #: A path: relative to the file when it comes from the TOML file.
    path: bool = False
    #: Never printed (``actorflow config`` shows ``***``).
    secret: bool = False

    #: A one-letter flag as well, e.g. ``-p``.
    short: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.short, self.flag) if self.short else (self.flag,)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()


OPTIONS: tuple[Option, ...] = (
    Option(
        "parallelism",
        parsing.integer(1),
        "default number of instances per operator",
        "the flow's own",
        metavar="N",
        short="-p",
    ),
    Option(
        "workers",
        _workers,
        "run N worker processes of the flow on this machine, supervised (auto: one per core)",
        default=1,
        metavar="N|auto",
    ),
    Option(
        "checkpoint_dir",
        _path,
        "directory of checkpoints and savepoints (turns checkpointing on)",
        "the flow's own (none: no checkpoints)",
        metavar="DIR",
        path=True,
    ),
    Option(
        "checkpoint_interval_ms",
        parsing.integer(1),
        "take a checkpoint every MS milliseconds",
        "the flow's own (none: only on demand and at the end)",
        metavar="MS",
    ),
    Option(
        "checkpoint_timeout_ms",
        parsing.integer(1),
        "abort a checkpoint not complete after MS milliseconds",
        "the flow's own (60000)",
        metavar="MS",
    ),
    Option(
        "state_backend",
        parsing.choice("heap", "heap-incremental", "rocksdb"),
        "where keyed state lives: on the heap (heap-incremental: checkpoints after the first write "
        "only the keys changed), or in an embedded RocksDB (state larger than memory)",
        "the flow's own (heap)",
        metavar="heap|heap-incremental|rocksdb",
    ),
    Option(
        "state_dir",
        _path,
        "directory for RocksDB state: a fresh directory per operator instance, deleted at the end",
        "the system's temporary directory",
        metavar="DIR",
        path=True,
    ),
    Option(
        "state_cache_mb",
        parsing.integer(1),
        "MB of live objects cached in front of RocksDB per operator instance",
        "the flow's own (64)",
        metavar="MB",
    ),
    Option(
        "restart_strategy",
        _restart_spec,
        f"after a failure: {parsing.RESTART_SYNTAX}",
        "the flow's own (none)",
        metavar="SPEC",
    ),
    Option(
        "from_savepoint",
        _path,
        "resume from this savepoint or checkpoint directory",
        "the newest complete checkpoint or savepoint in checkpoint_dir",
        metavar="PATH",
        path=True,
    ),
    Option(
        "log_format",
        parsing.choice("text", "json"),
        "log lines as text or JSON",
        default="text",
        metavar="text|json",
    ),
    Option(
        "log_level",
        parsing.choice("debug", "info", "notice", "warning", "error"),
        "the least important log lines shown (notice: the job's life cycle, warnings, errors)",
        default="notice",
        metavar="debug|info|notice|warning|error",
    ),
    Option(
        "progress",
        parsing.choice("auto", "always", "never"),
        "progress and a summary on stderr (auto: when stderr is a terminal)",
        default="auto",
        metavar="auto|always|never",
    ),
    Option("http_host", parsing.text, "address the HTTP server listens on", default="127.0.0.1"),
    Option(
        "http_port", parsing.port, "start the HTTP server on this port (0: any free one)", "no HTTP server"
    ),
    Option(
        "http_token",
        parsing.text,
        "bearer token the HTTP server asks for",
        "no token asked",
        metavar="TOKEN",
        secret=True,
    ),
    Option(
        "http_allowed_hosts",
        parsing.text,
        "names (comma-separated, * for any) the HTTP server answers to besides localhost, "
        "addresses and http_host",
        "localhost, IP addresses and http_host only",
        metavar="NAMES",
    ),
)

_BY_KEY = {option.key: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    """The effective settings; ``origins`` says where each came from (``flag --x``, ``env X``,
    ``file PATH`` or ``default``). A None value means not set: the flow keeps its own."""

    parallelism: int | None = None
    workers: int = 1
    checkpoint_dir: Path | None = None
    checkpoint_interval_ms: int | None = None
    checkpoint_timeout_ms: int | None = None
    state_backend: str | None = None
    state_dir: Path | None = None
    state_cache_mb: int | None = None
    restart_strategy: str | None = None
    from_savepoint: Path | None = None
    log_format: str = "text"
    log_level: str = "notice"
    progress: str = "auto"
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    http_token: str | None = None
    http_allowed_hosts: str | None = None
    config_file: Path | None = None
    origins: dict[str, str] = field(default_factory=dict, compare=False)


assert {f.name for f in fields(Config)} == {*_BY_KEY, "config_file", "origins"}, "OPTIONS and Config differ"


def add_arguments(parser: argparse.ArgumentParser, keys: Iterable[str] | None = None) -> None:
    """Add ``--config`` and a flag per setting in ``keys`` (default: all) to ``parser``.

    Flags default to nothing at all (``argparse.SUPPRESS``), so :func:`flags_of` sees only the
    flags given and a value from the environment or the file is not masked by a default.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"a TOML file of settings (${CONFIG_ENV})",
    )
    for key in keys if keys is not None else _BY_KEY:
        option = _BY_KEY[key]
        extra = f"; default: {option.default}" if option.default is not None else ""
        parser.add_argument(
            *option.flags,
            dest=option.key,
            metavar=option.metavar or option.key.rpartition("_")[2].upper(),
            default=argparse.SUPPRESS,
            help=f"{option.help} (${option.env}{extra})",
        )


def flags_of(arguments: argparse.Namespace) -> dict[str, str]:
    """The settings given as flags (and ``config``), as text."""
    return {key: value for key, value in vars(arguments).items() if key in _BY_KEY or key == "config"}


def resolve(flags: Mapping[str, str], environ: Mapping[str, str]) -> Config:
    """The effective configuration: each key from the flags, else the environment, else the file,
    else its default. Raises :class:`UsageError` naming the setting and its origin if a value is
    wrong, the file is unreadable, or the file has a key no setting has."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    config_text = flags.get("config")
    config_origin = "flag --config"
    if config_text is None and environ.get(CONFIG_ENV):
        config_text, config_origin = environ[CONFIG_ENV], f"env {CONFIG_ENV}"
    config_file = Path(config_text) if config_text else None
    from_file = _read_file(config_file) if config_file is not None else {}
    for option in OPTIONS:
        if option.key in flags:
            values[option.key] = _parse(option, flags[option.key], f"flag {option.flag}")
            origins[option.key] = f"flag {option.flag}"
        elif environ.get(option.env, "") != "":
            values[option.key] = _parse(option, environ[option.env], f"env {option.env}")
            origins[option.key] = f"env {option.env}"
        elif option.key in from_file:
            assert config_file is not None
            origin = f"file {config_file}"
            value = _parse(option, from_file[option.key], origin)
            if option.path and not value.is_absolute():
                value = (config_file.parent / value).resolve()
            values[option.key] = value
            origins[option.key] = origin
        else:
            values[option.key] = option.default
            origins[option.key] = "default"
    origins["config_file"] = config_origin if config_file is not None else "default"
    return Config(**values, config_file=config_file, origins=origins)


def _parse(option: Option, raw: object, origin: str) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise UsageError(f"{option.key} ({origin}): expected a string or a number, got {raw!r}")
    try:
        return option.parse(str(raw))
    except ValueError as error:
        raise UsageError(f"{option.key} ({origin}): {error}") from None


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise UsageError(f"cannot read the configuration file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path} is not valid TOML: {error}") from None
    flat: dict[str, object] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            # A table: [checkpoint] dir = ... is checkpoint_dir.
            for inner, inner_value in value.items():
                flat[f"{name}_{inner}"] = inner_value
        else:
            flat[name] = value
    unknown = sorted(set(flat) - set(_BY_KEY))
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(_BY_KEY)}")
    return flat
