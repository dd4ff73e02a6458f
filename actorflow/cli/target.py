"""Finding the flow a command names: ``package.module:attr`` or ``path/to/file.py[:attr]``.

``attr`` (default ``flow``) names a :class:`~actorflow.Flow`, or a function returning one (plain or
async). Arguments after the target (``actorflow run flow.py --limit 10``) go to that function as one
list (``flow(["--limit", "10"])``) and into ``sys.argv[1:]``, as if the file had been run by
``python``; without arguments the function is called with none. A file's directory goes on
``sys.path`` first, so the file can import its neighbours.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actorflow.api.flow import Flow
from actorflow.cli.errors import UsageError

__all__ = ["load_flow"]


def _takes_arguments(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or an odd callable: let the call tell
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def _load_attribute(target: str, arguments: Sequence[str]) -> Any:
    location, _, attribute = target.partition(":")
    attribute = attribute or "flow"
    sys.argv = [location, *arguments]  # for a module that reads its arguments when imported
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


async def load_flow(target: str, arguments: Sequence[str] = ()) -> Flow:
    """Resolve ``target`` to a flow: a Flow object, or a (possibly async) function returning one,
    called with ``arguments`` if there are any.

    Raises :class:`UsageError` when the file, module or attribute is missing or is not a flow, or
    when there are arguments and nothing to give them to.
    """
    found = _load_attribute(target, arguments)
    if arguments and (isinstance(found, Flow) or not callable(found) or not _takes_arguments(found)):
        raise UsageError(
            f"{target} takes no arguments (got {' '.join(arguments)}): name a function that takes "
            "a list of them, or put actorflow's own flags before the target"
        )
    if callable(found) and not isinstance(found, Flow):
        found = found(list(arguments)) if arguments else found()
        if inspect.isawaitable(found):
            found = await found
    if not isinstance(found, Flow):
        raise UsageError(f"{target} is not a Flow (got {type(found).__name__})")
    return found
