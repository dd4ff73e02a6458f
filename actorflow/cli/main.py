"""``actorflow``: run a flow as a daemon, print its plan, its settings, its checkpoints; savepoints.

Commands::

    actorflow --version                      the version of actorflow
    actorflow run [settings] TARGET [ARGS]   run a flow until it ends or is stopped
    actorflow sql [settings] [FILE.sql]      run a SQL script as a job; without one, the SQL client
    actorflow plan TARGET [--format text|dot|mermaid]
    actorflow config [settings] [--format toml|json]
    actorflow savepoint [--checkpoint-dir DIR]
    actorflow checkpoints list [--checkpoint-dir DIR] [--format text|json]

``TARGET`` is ``package.module:attr`` or ``path/to/file.py[:attr]``; ``attr`` (default ``flow``)
names a Flow or a function returning one; arguments actorflow does not know (or all after ``--``) go
to that function as a list. Settings come from flags, then ``ACTORFLOW_*`` variables, then a TOML
file (``--config FILE`` or ``$ACTORFLOW_CONFIG``); see docs/operations.md.

Exit codes:

- 0: the flow ran to its end, or stopped on SIGTERM / SIGINT after its final savepoint; for the
  other commands, done.
- 1: the flow failed (once its restart strategy gave up), or a savepoint could not be taken.
- 2: bad usage: an unknown command or flag, a wrong setting, a target that is not a flow, a
  checkpoint directory another job is using, a mistake in a SQL script or one with nothing to run.
- 130 / 143: stopped by SIGINT / SIGTERM without a savepoint: checkpointing is off, the final
  savepoint failed, or a second signal stopped it at once.
- 141: stdout was closed early (``actorflow run ... | head``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import sys
import traceback
from pathlib import Path

from actorflow.api.flow import Flow, new_event_loop
from actorflow.cli import config as settings
from actorflow.cli.checkpoints import SavepointFailed, list_checkpoints, render_listing, take_savepoint
from actorflow.cli.daemon import Daemon, apply_config
from actorflow.cli.errors import UsageError
from actorflow.cli.failures import report_failure
from actorflow.cli.logs import LogHandler, configure_logging, set_job
from actorflow.cli.plan_formats import FORMATS, render
from actorflow.cli.progress import ClearingStream, Progress, probes_of
from actorflow.cli.show_config import render_json, render_toml
from actorflow.cli.sql_script import load_sql_flow
from actorflow.cli.target import load_flow
from actorflow.cli.workers import needs_supervisor, supervise
from actorflow.errors import InputError

__all__ = ["UsageError", "build_parser", "load_flow", "main"]

log = logging.getLogger("actorflow.cli")

_SUMMARY, _, _REST = (__doc__ or "").replace("``", "").partition("\n")
_EXIT_CODES = "exit codes:" + _REST.partition("Exit codes:")[2].replace("\n- ", "\n  ")


def _version() -> str:
    # The installed distribution's (the package itself is above this layer: it imports everything).
    try:
        return importlib.metadata.version("actorflow")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (the docker tests check the compose file's command lines with it)."""
    parser = argparse.ArgumentParser(
        prog="actorflow",
        description=_SUMMARY,
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"actorflow {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    target_help = "module:attr or path/to/file.py[:attr] (attr defaults to flow)"

    # Arguments actorflow does not know are the flow's (see actorflow.cli.target): no abbreviations,
    # so that a flow's --par is not taken for --parallelism.
    run = commands.add_parser(
        "run",
        help="run a flow until it ends or is stopped (SIGTERM: savepoint, stop)",
        usage="actorflow run [settings] TARGET [flow arguments] [-- more flow arguments]",
        allow_abbrev=False,
    )
    run.add_argument("target", help=target_help)
    settings.add_arguments(run)

    sql = commands.add_parser(
        "sql",
        help="run a SQL script as a job (settings as for run); without one, the SQL client",
        usage="actorflow sql [settings] [FILE.sql]",
        allow_abbrev=False,
    )
    sql.add_argument("file", nargs="?", help="a SQL script (without one: the client)")
    settings.add_arguments(sql)

    plan = commands.add_parser(
        "plan",
        help="print the physical plan: chains, parallelism, partitioners",
        usage="actorflow plan [--format text|dot|mermaid] [-p N] TARGET [flow arguments]",
        allow_abbrev=False,
    )
    plan.add_argument("target", help=target_help)
    plan.add_argument("--format", choices=FORMATS, default="text", help="text, Graphviz dot or Mermaid")
    settings.add_arguments(plan, ["parallelism"])

    show = commands.add_parser("config", help="print the effective settings and where each came from")
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    settings.add_arguments(show)

    savepoint = commands.add_parser(
        "savepoint", help="take a savepoint of the job on a checkpoint directory (running or stopped)"
    )
    settings.add_arguments(savepoint, ["checkpoint_dir"])
    savepoint.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for a running job"
    )

    checkpoints = commands.add_parser("checkpoints", help="inspect a checkpoint directory")
    actions = checkpoints.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list the complete checkpoints and savepoints")
    settings.add_arguments(listing, ["checkpoint_dir"])
    listing.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _checkpoint_dir(config: settings.Config) -> Path:
    if config.checkpoint_dir is None:
        raise UsageError("which checkpoint directory? give --checkpoint-dir (or $ACTORFLOW_CHECKPOINT_DIR)")
    return config.checkpoint_dir


def _wants_progress(config: settings.Config) -> bool:
    return config.progress == "always" or (config.progress == "auto" and sys.stderr.isatty())


async def _run(target: str, arguments: list[str], config: settings.Config, handler: LogHandler) -> int:
    flow = await load_flow(target, arguments)
    return await run_flow(flow, target, config, handler)


async def run_flow(flow: Flow, target: str, config: settings.Config, handler: LogHandler) -> int:
    """Run ``flow`` as ``actorflow run`` does (``actorflow sql FILE`` too): the settings applied,
    its inputs checked, then the daemon (signals, savepoints, HTTP, progress); returns the exit
    code. ``target`` is what the control folder's status names."""
    set_job(handler, flow.name)
    apply_config(flow, config)
    try:
        flow.check_inputs()  # a missing file is bad usage, before anything starts
    except InputError as error:
        raise UsageError(str(error)) from None
    daemon = Daemon(flow, config, target)
    if _wants_progress(config):
        progress = daemon.progress = Progress(flow.name, probes_of(flow), sys.stderr)
        handler.before_emit = progress.clear
        if sys.stdout.isatty():  # printed records share the screen with the status line
            stdout = sys.stdout
            sys.stdout = ClearingStream(stdout, progress.clear)
            try:
                return await daemon.run()
            finally:
                sys.stdout = stdout
    return await daemon.run()


async def _plan(target: str, arguments: list[str], config: settings.Config, form: str) -> str:
    flow = await load_flow(target, arguments)
    # Only the parallelism shapes the plan; the other settings would touch the disk (a checkpoint
    # directory is created when it is set).
    apply_config(flow, settings.Config(parallelism=config.parallelism))
    return render(flow.plan(), form, flow.name)


def _client(config: settings.Config) -> int:
    """``actorflow sql`` without a file (:mod:`actorflow.cli.sql_client`)."""
    if config.workers > 1:
        raise UsageError("the SQL client runs in one process: --workers is for a script")
    try:
        from actorflow.cli.sql_client import run_client
    except ImportError as error:
        raise UsageError(
            f"actorflow sql needs the sql extra: pip install 'actorflow[sql]' ({error})"
        ) from None
    return run_client(config)


def _command(arguments: argparse.Namespace) -> int:
    config = settings.resolve(settings.flags_of(arguments), os.environ)
    command = arguments.command
    if command == "config":
        print(render_json(config) if arguments.format == "json" else render_toml(config))
        return 0
    if command == "checkpoints":
        print(render_listing(list_checkpoints(_checkpoint_dir(config)), arguments.format))
        return 0
    if command == "savepoint":
        try:
            outcome = take_savepoint(_checkpoint_dir(config), arguments.timeout)
        except SavepointFailed as error:
            print(f"actorflow: {error}", file=sys.stderr)
            return 1
        print(outcome.path)
        print(f"savepoint {outcome.checkpoint_id}: {outcome.how}", file=sys.stderr)
        return 0
    script = getattr(arguments, "file", None) if command == "sql" else None
    if (command == "run" or script is not None) and needs_supervisor(config):
        return supervise(arguments.argv, config)
    handler = configure_logging(config.log_format, config.log_level, None)
    if command == "sql" and script is None:
        return _client(config)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            if script is not None:
                flow, lines = load_sql_flow(script)
                if lines:
                    print("\n".join(lines), flush=True)
                return runner.run(run_flow(flow, script, config, handler))
            target, flow_arguments = arguments.target, arguments.flow_arguments
            if command == "plan":
                print(runner.run(_plan(target, flow_arguments, config, arguments.format)))
                return 0
            return runner.run(_run(target, flow_arguments, config, handler))
        except (UsageError, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as error:
            report_failure(error, config)  # one line; the traceback at --log-level debug
            return 1


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code (see the module docstring)."""
    parser = build_parser()
    arguments, unknown = parser.parse_known_args(argv)
    if unknown and arguments.command not in ("run", "plan"):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    arguments.flow_arguments = unknown
    arguments.argv = sys.argv[1:] if argv is None else argv  # a supervisor's workers get the same
    try:
        return _command(arguments)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout was closed early (``| head``): stop quietly, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except UsageError as error:
        print(f"actorflow: {error}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
