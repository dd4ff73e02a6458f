"""Which of actorflow's optional C extensions to use.

Each extension (built by ``setup.py`` when a compiler is present) has a pure-Python twin that
answers the same; :func:`load` says whether the compiled one is there, current and wanted. It is
not when ``ACTORFLOW_PURE_PYTHON`` is set (to anything but ``0``), when it is missing, when it was
built for another version of the module that loads it, or when its C source is newer than the
build (edited since the last ``pip install -e .``).

>>> load("actorflow.no_such_kernel", version=1) is None
True
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

__all__ = ["load", "pure_python"]


def pure_python() -> bool:
    """Whether ``ACTORFLOW_PURE_PYTHON`` asks for the pure-Python twins only.

    >>> isinstance(pure_python(), bool)
    True
    """
    return os.environ.get("ACTORFLOW_PURE_PYTHON", "") not in ("", "0")


def load(name: str, version: int) -> ModuleType | None:
    """The compiled module ``name`` if it is built, of ``version`` (its ``VERSION``), not older
    than its C source and wanted; None otherwise (then the caller runs its Python twin)."""
    if pure_python():
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    if getattr(module, "VERSION", None) != version:
        return None
    built = Path(module.__file__ or "")
    source = built.with_name(name.rpartition(".")[2] + ".c")
    try:
        if source.stat().st_mtime > built.stat().st_mtime:
            return None
    except OSError:
        pass  # installed from a wheel: no source beside it
    return module
