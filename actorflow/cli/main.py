"""``actorflow`` command line entry point.

``actorflow run TARGET`` loads a flow and runs it to its end. ``TARGET`` is ``package.module:attr``
or ``path/to/file.py[:attr]``; ``attr`` (default ``flow``) names a :class:`~actorflow.Flow`, or a
function returning one (plain or async). Exit codes: 0 done, 1 the flow failed, 2 bad usage,
130 interrupted, 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from actorflow.api.flow import Flow, new_event_loop

__all__ = ["UsageError", "load_flow", "main"]


class UsageError(Exception):
    """The command line names something that cannot be run (exit code 2)."""


def _load_attribute(target: str) -> Any:
    location, _, attribute = target.partition(":")
    attribute = attribute or "flow"
    if location.endswith(".py") or "/" in location:
        path = Path(location)
        if not path.is_file():
            raise UsageError(f"no such file: {location}")
        spec = importlib.util.spec_from_file_location(f"_actorflow_target_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot load {location}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as error:
            if error.name is None or not location.startswith(error.name):
                raise
            raise UsageError(f"no module named {error.name!r}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise UsageError(f"{location} has no attribute {attribute!r}") from None


async def load_flow(target: str) -> Flow:
    """Resolve ``TARGET`` to a flow: a Flow object, or a (possibly async) function returning one."""
    found = _load_attribute(target)
    if callable(found) and not isinstance(found, Flow):
        found = found()
        if inspect.isawaitable(found):
            found = await found
    if not isinstance(found, Flow):
        raise UsageError(f"{target} is not a Flow (got {type(found).__name__})")
    return found


async def _run(target: str) -> None:
    flow = await load_flow(target)
    await flow.run()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="actorflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a flow to its end")
    run.add_argument("target", help="module:attr or path/to/file.py[:attr] (attr defaults to flow)")
    plan = commands.add_parser("plan", help="print the physical plan of a flow")
    plan.add_argument("target")
    arguments = parser.parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            if arguments.command == "plan":
                print(runner.run(load_flow(arguments.target)).plan().describe())
            else:
                runner.run(_run(arguments.target))
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
