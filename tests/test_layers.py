"""The layer rule (a module never imports a layer above its own) and a complete public namespace."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import actorflow

PACKAGE = Path(actorflow.__file__).resolve().parent

#: Bottom to top. A module may import its own layer and the ones below it.
LAYERS = [
    "errors",
    "compiled",
    "runtime",
    "time",
    "state",
    "checkpoint",
    "operators",
    "ml",
    "plan",
    "api",
    "graph",
    "sql",
    "web",
    "cli",
]
#: The namespace and the ``python -m`` entry point sit above everything.
EXEMPT = {"actorflow/__init__.py", "actorflow/__main__.py"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``actorflow.X...`` -> ``X``; the bare package counts as the top (it imports everything)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "actorflow"


def imported_modules(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every module ``path`` imports, anywhere in it (functions and ``if TYPE_CHECKING`` included).

    ``source`` stands in for the file's text (to check the checker).
    """
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # A name may be a submodule ("from actorflow import api"): count it as one too.
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def violations(path: Path, source: str | None = None) -> list[str]:
    """The imports of ``path`` that break the layer rule, one line each."""
    own = layer_of(module_name(path))
    assert own in LAYERS, f"{relative(path)} is in no known layer: add {own!r} to LAYERS (bottom to top)"
    found = []
    for line, module in imported_modules(path, source):
        if module.split(".")[0] == "actorflow_kafka":
            found.append(f"line {line}: {module} (actorflow never imports actorflow_kafka)")
        elif module.split(".")[0] == "actorflow":
            other = layer_of(module)
            if other not in LAYERS or LAYERS.index(other) > LAYERS.index(own):
                found.append(f"line {line}: {module} ({other} is above {own})")
    return found


@pytest.mark.parametrize("path", [p for p in modules() if relative(p) not in EXEMPT], ids=relative)
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    found = violations(path)
    assert not found, f"{relative(path)} imports a higher layer:\n" + "\n".join(found)


def test_the_layer_check_sees_type_checking_lazy_and_relative_imports() -> None:
    # The checker must not miss imports hidden from the interpreter at run time.
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        from . import mailbox
        from ..errors import PlanError
        from ..plan import graph
        from actorflow import Flow
        if TYPE_CHECKING:
            from actorflow.cli.main import main
        def late():
            import actorflow_kafka
        """
    )
    found = violations(PACKAGE / "runtime" / "probe.py", source)
    # Lines 3 and 4 (own layer, a lower layer) are fine; the plan, the namespace, the CLI and Kafka are not.
    assert {line.split(":")[0] for line in found} == {"line 5", "line 6", "line 8", "line 10"}


def test_the_layer_check_allows_the_same_layer_under_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from actorflow.api.flow import Flow\n"
    )
    assert violations(PACKAGE / "api" / "stream.py", source) == []
    assert violations(PACKAGE / "api" / "stream.py") == []


def test_importing_actorflow_does_not_import_actorflow_kafka() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, actorflow, actorflow.cli.main; "
            "assert 'actorflow_kafka' not in sys.modules, 'actorflow_kafka was imported'",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_dunder_all_lists_every_public_name_and_only_existing_ones() -> None:
    exported = actorflow.__all__
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    public = {
        name
        for name, value in vars(actorflow).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(exported) == set(), "public names missing from __all__"
    assert [name for name in exported if not hasattr(actorflow, name)] == []


def test_dunder_all_matches_the_names_bound_in_the_init_source() -> None:
    # Also from the source, so a name hidden by a later rebinding or a lazy __getattr__ is seen.
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            bound.add(node.target.id)
    public = {name for name in bound if not name.startswith("_")}
    modules_bound = {
        name for name in public if isinstance(getattr(actorflow, name, None), types.ModuleType)
    }
    assert public - modules_bound - set(actorflow.__all__) == set()


def test_star_import_gives_exactly_dunder_all() -> None:
    namespace: dict[str, object] = {}
    exec("from actorflow import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(actorflow.__all__)
