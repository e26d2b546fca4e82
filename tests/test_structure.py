"""The shape of the house: imports run one way (no cycles, no climbing back).

Read from the source with ``ast`` (nothing is imported but the command
line's list of commands, :data:`npsegnet.cli.COMMANDS`), every ``import``
statement counts, also those inside functions: a lazy import is still an
arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from npsegnet.cli import COMMANDS as CLI_COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "npsegnet"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the npsegnet modules ``path`` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("npsegnet"):
                found.add(target)
                # `from . import x` may import the submodule x
                for alias in node.names:
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("npsegnet")}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {t for t in imports_of(path) if t in modules and t != name}
        for name, path in modules.items()
    }


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_kernels_and_layers_never_import_the_textbook(graph):
    bad = [
        (m, t)
        for m, targets in graph.items()
        if _in(m, "npsegnet.kernels") or _in(m, "npsegnet.layers")
        for t in targets
        if _in(t, "npsegnet.reference")
    ]
    assert not bad, f"the fast path imports the textbook: {bad}"


def test_the_textbook_needs_no_compiler(graph):
    bad = [
        (m, t)
        for m, targets in graph.items()
        if _in(m, "npsegnet.reference")
        for t in targets
        if not (_in(t, "npsegnet.reference") or t == "npsegnet._checks")
        and t != "npsegnet"
    ]
    assert not bad, f"reference/ imports beyond the shared checks: {bad}"


def test_no_import_cycles(graph):
    # package faces (__init__) re-export their children: arrows from a face to
    # its own children are not cycles of the house
    def edges(m):
        return {t for t in graph[m] if not (_in(t, m) and m != t)}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in edges(m):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


# -- the upper floors: commands, small rooms ---------------------------------
# every subcommand's module, as the command line lists them (a new command is
# held to the same rules without editing this file)
COMMANDS = tuple(module for module, _ in CLI_COMMANDS.values())
LOWER_FLOORS = ("npsegnet.layers", "npsegnet.kernels", "npsegnet.reference")
MAX_LINES = 700


def _command_of(name: str) -> str | None:
    return next((c for c in COMMANDS if _in(name, c)), None)


def test_no_source_file_is_over_700_lines():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long[str(path.relative_to(PACKAGE.parent))] = lines
    assert not long, f"past {MAX_LINES} lines a module usually holds two: {long}"


def test_the_commands_never_import_each_other(graph):
    bad = [
        (m, t)
        for m, targets in graph.items()
        if _command_of(m)
        for t in targets
        if _command_of(t) not in (None, _command_of(m))
    ]
    assert not bad, f"a command borrows from another (move it below both): {bad}"


def test_the_lower_floors_never_import_the_commands(graph):
    bad = [
        (m, t)
        for m, targets in graph.items()
        if any(_in(m, p) for p in (*LOWER_FLOORS, "npsegnet.models"))
        for t in targets
        if _command_of(t)
    ]
    assert not bad, f"layers, kernels, reference or models import a command: {bad}"


def test_only_the_command_line_imports_a_command(graph):
    # what the commands share lives below them (inference, errors, data, ...)
    bad = [
        (m, t)
        for m, targets in graph.items()
        if not _command_of(m) and m not in ("npsegnet.cli", "npsegnet.__main__")
        for t in targets
        if _command_of(t)
    ]
    assert not bad, f"a shared module imports a command: {bad}"
