"""The shape of the package (docs/architecture.md): imports one way, short functions, one
precision table."""

import ast
from pathlib import Path

import pytest

from densenet_trt.backends import BACKENDS
from densenet_trt.spec import BACKEND_NAMES, Precision

PACKAGE = Path(__file__).resolve().parents[1] / "densenet_trt"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    modules = {module_name(p) for p in SOURCES}
    return found & modules


def test_no_import_cycles():
    graph = {module_name(p): imports(p) - {"densenet_trt"} for p in SOURCES}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join(stack[stack.index(nxt):] + [nxt])}")
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_no_module_imports_from_the_package_init():
    for path in SOURCES:
        if path != PACKAGE / "__init__.py":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level and module_name(path).count(".") + 1 - node.level == 0:
                    assert node.module, f"{path.name} imports from the package __init__"


def test_functions_and_files_are_short():
    for path in SOURCES:
        source = path.read_text()
        assert len(source.splitlines()) <= 500, f"{path.name} has {len(source.splitlines())} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.name}:{node.lineno} {node.name} has {length} lines"


def test_no_table_keyed_by_precision_names_outside_the_precision_table():
    """A dict keyed by a precision name, or a tuple, list or set of two or more of them, is a
    table of its own: the bug class of a table that misses a precision."""
    names = {p.value for p in Precision}
    for path in SOURCES:
        if path.name == "spec.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                keys = [k for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
                assert not keys, f"{path.name}:{node.lineno}: a table keyed by precision names"
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = [e for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
                assert len(values) < 2, f"{path.name}:{node.lineno}: a list of precision names"


def test_the_table_names_every_backend_and_each_backend_only_its_precisions():
    assert tuple(BACKENDS) == BACKEND_NAMES
    for backend in BACKENDS.values():
        for device in ("cpu", "cuda"):
            for precision in backend.precisions(device):
                assert isinstance(precision, Precision)
                assert backend.name in precision.backends, (backend.name, precision)
