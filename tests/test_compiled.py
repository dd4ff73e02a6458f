"""actorflow's optional C extensions are taken when they are built, current and wanted: CI has a
compiler and sets ACTORFLOW_REQUIRE_COMPILED=1, so a missing build fails there; ACTORFLOW_PURE_PYTHON
chooses the Python twins; a build older than its C source or of another VERSION is not used
(actorflow/compiled.py). Each kernel's own test file checks that it answers as its twin."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actorflow.compiled import load, pure_python

#: (the module that chooses, its attribute holding the compiled kernel or None, the kernel)
KERNELS = [
    ("actorflow.time.watermarks", "_compiled", "actorflow.time._marks"),
    ("actorflow.state.keyed", "_kernel", "actorflow.state._keyed"),
    ("actorflow.operators.process", "_compiled", "actorflow.operators._keyed_loop"),
    ("actorflow.operators.windows.operator", "_compiled", "actorflow.operators.windows._pane_run"),
]


@pytest.mark.parametrize(("user", "attribute", "kernel"), KERNELS, ids=[k[2] for k in KERNELS])
def test_every_kernel_is_built_and_taken_when_required(user: str, attribute: str, kernel: str) -> None:
    if os.environ.get("ACTORFLOW_REQUIRE_COMPILED", "") in ("", "0"):
        pytest.skip("ACTORFLOW_REQUIRE_COMPILED is not set")
    importlib.import_module(kernel)  # raises when it is not built
    taken = getattr(importlib.import_module(user), attribute)
    assert (taken is None) == pure_python(), f"{user}.{attribute} is {taken!r}"


def chosen(**env: str) -> list[bool]:
    """Whether each kernel is taken, in a fresh interpreter with ``env``."""
    code = (
        "import importlib\n"
        f"for user, attribute, _ in {KERNELS!r}:\n"
        "    print(getattr(importlib.import_module(user), attribute) is not None)\n"
        "from actorflow.state import keyed\n"
        "print(keyed.KeyContext is not keyed._PyKeyContext)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return [line == "True" for line in found]


def usable(kernel: str) -> bool:
    """Whether ``kernel`` is built and current (ACTORFLOW_PURE_PYTHON aside)."""
    try:
        version = importlib.import_module(kernel).VERSION
    except ImportError:
        return False
    return load(kernel, version) is not None


def test_actorflow_pure_python_chooses_every_python_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    assert chosen(ACTORFLOW_PURE_PYTHON="1") == [False] * (len(KERNELS) + 1)
    monkeypatch.setenv("ACTORFLOW_PURE_PYTHON", "0")
    built = [usable(kernel) for *_, kernel in KERNELS]
    taken = chosen(ACTORFLOW_PURE_PYTHON="0")
    assert taken[:-1] == built
    assert taken[-1] == built[1]  # the compiled KeyContext comes with the compiled handles


def test_a_kernel_is_not_taken_when_stale_or_of_another_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACTORFLOW_PURE_PYTHON", raising=False)
    package = tmp_path / "fake_kernels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    built = package / "_loop.py"  # stands in for the built extension: load reads only its file
    built.write_text("VERSION = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load("fake_kernels._loop", 3) is not None
    assert load("fake_kernels._loop", 2) is None  # built for another version of its user
    source = package / "_loop.c"
    source.write_text("/* edited since the build */\n")
    later = time.time() + 10
    os.utime(source, (later, later))
    assert load("fake_kernels._loop", 3) is None  # older than its source
    monkeypatch.setenv("ACTORFLOW_PURE_PYTHON", "1")
    os.utime(source, (0, 0))
    assert load("fake_kernels._loop", 3) is None  # not wanted
    monkeypatch.setenv("ACTORFLOW_PURE_PYTHON", "0")
    assert load("fake_kernels._loop", 3) is not None
    assert load("fake_kernels._missing", 3) is None
