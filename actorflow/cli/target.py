"""Finding the flow a command names: ``package.module:attr`` or ``path/to/file.py[:attr]``.

``attr`` (default ``flow``) names a :class:`~actorflow.Flow`, or a function returning one (plain or
async). Arguments after the target (``actorflow run flow.py --limit 10``) go to that function as one
list (``flow(["--limit", "10"])``) and into ``sys.argv[1:]``, as if the file had been run by
``python``; without arguments the function is called with none. A file's directory goes on
``sys.path`` first, so the file can import its neighbours; for a module, the working directory does
(as with ``python -m``). A ``flow.execute()`` the file runs when imported hands the flow to the
command instead of running it (see :func:`load_flow`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from actorflow.api.flow import Flow, deferring_execute
from actorflow.cli.errors import UsageError

__all__ = ["load_flow"]

_MISSING = object()


def _takes_arguments(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or an odd callable: let the call tell
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def _import(target: str, arguments: Sequence[str]) -> tuple[ModuleType, str, str | None]:
    """The target's module, its location, and the attribute it names (None: not named)."""
    location, _, attribute = target.partition(":")
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
        # Registered before it runs, as an import would: a dataclass looks its module up there,
        # and pickle finds the file's classes (state, checkpoints) by the module's name.
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]
            raise
        return module, location, attribute or None
    # As ``python -m`` and uvicorn do: a module in the working directory can be named, also when
    # the console script (whose own directory is first on the path) runs the command.
    if not {"", ".", os.getcwd()} & set(sys.path):
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(location)
    except ModuleNotFoundError as error:
        if error.name is None or not location.startswith(error.name):
            raise
        raise UsageError(f"no module named {error.name!r}") from None
    return module, location, attribute or None


def _check_signature(target: str, function: Any, arguments: Sequence[str]) -> None:
    """A UsageError unless ``function`` can be called as the command will call it."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin or an odd callable: let the call tell
        return
    try:
        signature.bind(list(arguments)) if arguments else signature.bind()
    except TypeError as error:
        name = getattr(function, "__name__", type(function).__name__)
        given = "the flow's arguments" if arguments else "no arguments"
        raise UsageError(
            f"{target} is not a Flow or a function that returns one: {name}() cannot be called "
            f"with {given} ({error})"
        ) from None


async def load_flow(target: str, arguments: Sequence[str] = ()) -> Flow:
    """Resolve ``target`` to a flow: a Flow object, or a (possibly async) function returning one,
    called with ``arguments`` if there are any.

    While the target is imported and its function called, :meth:`Flow.execute` runs nothing
    (:func:`~actorflow.api.flow.deferring_execute`): a file that ends in ``flow.execute()`` hands
    its flow over, and a target without ``:attr`` and without a ``flow`` attribute is the one flow
    the file executed. A function that executed one flow and returned None stands for that flow.

    Raises :class:`UsageError` when the file, module or attribute is missing or is not a flow, or
    when there are arguments and nothing to give them to.
    """
    with deferring_execute() as executed:
        module, location, named = _import(target, arguments)
        attribute = named or "flow"
        found: Any = getattr(module, attribute, _MISSING)
        if found is _MISSING:
            if named is None and len(executed) == 1:
                found = executed[0]
            else:
                ran = f" (it executes {len(executed)} flows: name the one to run)" if executed else ""
                raise UsageError(f"{location} has no attribute {attribute!r}{ran}")
        is_function = callable(found) and not isinstance(found, Flow)
        if arguments and not (is_function and _takes_arguments(found)):
            raise UsageError(
                f"{target} takes no arguments (got {' '.join(arguments)}): name a function that "
                "takes a list of them, or put actorflow's own flags before the target"
            )
        if is_function:
            _check_signature(target, found, arguments)
            before = len(executed)
            found = found(list(arguments)) if arguments else found()
            if inspect.isawaitable(found):
                found = await found
            if found is None and len(executed) == before + 1:
                found = executed[-1]  # main() built a flow and called its execute()
    if not isinstance(found, Flow):
        raise UsageError(f"{target} is not a Flow (got {type(found).__name__})")
    return found
