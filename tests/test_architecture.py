"""The package's layout: lower layers never import higher ones, no import cycles, commands apart from
the library, modules and functions short enough to read in one sitting, and tests that mirror the
package's folders.

Imports are read from the source (every ``import`` and ``from ... import``, at module level or inside a
function), so a lazy import counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vqkit"
TESTS = Path(__file__).resolve().parent
# Test folders that drive a whole system rather than one package folder.
SYSTEM_TEST_FOLDERS = {
    "browser": "notebook 04's viewer in a real JupyterLab and browser",
    "cluster": "training on a real one-node Slurm",
}

# Lowest first; a module may import only from its own layer or a lower one. docs/architecture.md explains them.
LAYERS: list[tuple[str, ...]] = [
    ("vqkit.version", "vqkit.errors", "vqkit.utils"),
    ("vqkit.config", "vqkit.cameras", "vqkit.tokenizer"),
    ("vqkit.roomplan", "vqkit.vggt"),
    ("vqkit.data", "vqkit.synth", "vqkit.prep"),
    ("vqkit.models",),
    ("vqkit.eval",),
    ("vqkit.train",),
    ("vqkit.viz", "vqkit.tools", "vqkit.lmms"),
    ("vqkit.commands", "vqkit.__main__", "vqkit.train.__main__", "vqkit"),
]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The vqkit modules ``path`` imports (``from pkg import sub`` counts as the submodule when it is one)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "vqkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "vqkit":
                continue
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
            out |= subs or {base}
    return {m for m in out if m != name}


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    assert best is not None, f"{name} is in no layer: add it to LAYERS and docs/architecture.md"
    return best


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(path, name, known) & known for name, path in mods.items()}


def test_lower_layers_never_import_higher_ones():
    wrong = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
             for a, deps in import_graph().items() for b in sorted(deps) if layer_of(b) > layer_of(a)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_only_commands_parse_arguments():
    """Library modules have no ``main`` and no argparse: the command line lives in vqkit.commands."""
    offenders = []
    for name, path in modules().items():
        if name.startswith("vqkit.commands") or name in ("vqkit.__main__", "vqkit.train.__main__"):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            offenders.append(f"{name}: def main")
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "argparse" in ast.unparse(n) for n in ast.walk(tree)):
            offenders.append(f"{name}: imports argparse")
    assert not offenders, offenders


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_short_enough_to_read(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines (split it, or say in its docstring why not)"


def test_functions_are_short_or_say_why():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if n > MAX_FUNCTION_LINES and "Long because" not in doc:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_test_folders_mirror_the_package():
    """``tests/<folder>/`` holds the tests of ``vqkit/<folder>/`` (``test_<module>.py`` for its modules):
    a folder of tests names a folder of the package, or is one of the system tests."""
    package_folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    test_folders = {p.name for p in TESTS.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    strays = sorted(test_folders - package_folders - set(SYSTEM_TEST_FOLDERS))
    assert not strays, f"tests/{strays[0]}/ names no vqkit/ folder: move its tests to the folder of what they test"
    assert set(SYSTEM_TEST_FOLDERS) <= test_folders
