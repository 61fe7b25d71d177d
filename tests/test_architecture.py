"""The shape of the package (docs/architecture.md): imports one way, short functions, one
precision table."""

import ast
import re
from pathlib import Path

import pytest

from densenet_trt.backends import BACKENDS
from densenet_trt.engine.spec import BACKEND_NAMES, Precision

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


def test_the_command_line_takes_its_defaults_from_the_defaults_module():
    """A number or a name written as an option's default in cli/ restates a library default
    (defaults.py holds them, read by the library and the command line alike); flags' True and
    False and None (no value) are no defaults of the library's."""
    restated = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _called(node) in ("option", "argument"):
                restated += [f"{path.name}:{node.lineno}: {ast.unparse(node.args[0])} {k.arg}={k.value.value!r}"
                             for k in node.keywords if k.arg in ("default", "flag_value")
                             and isinstance(k.value, ast.Constant) and k.value.value not in (None, True, False)]
    assert restated == [], "defaults written in cli/ instead of read from defaults.py:\n" + "\n".join(restated)


def test_backends_that_share_a_flag_declare_it_alike():
    """The command line offers a flag once (``cli.options.backend_flags``): each backend that
    declares it must set the same setting, with the same type, bounds and help."""
    declared = {}
    for backend in BACKENDS.values():
        for name, flag in backend.settings.flags().items():
            assert declared.setdefault(flag.flag, (name, flag)) == (name, flag), (backend.name, flag.flag)


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


# What only a backend may do: open an ONNX Runtime session, read or compile an OpenVINO model.
BACKEND_CALLS = ("InferenceSession", "compile_model", "read_model", "Core")
# Findings outside backends/ that are not about a backend, each with the reason.
NOT_ABOUT_A_BACKEND = {
    ("engine/export.py", "InferenceSession"): "export checks its own exported ONNX file against eager PyTorch",
    ("engine/export.py", "backend name 'torchscript'"): "export's own capture format torchscript (FORMATS, _write, "
                                                 "load_capture), not the backend",
    ("choices.py", "backend name 'torchscript'"): "export's capture format torchscript (EXPORT_FORMATS), not the "
                                                  "backend",
}


def _names_backend(node: ast.AST) -> bool:
    """``node`` reads a backend's name: ``backend``, ``x.backend``, ``backend_name``..."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name == "backend" or name.startswith("backend_") or name.endswith("_backend")


def _literals(node: ast.AST) -> list[str]:
    """The string literals ``node`` is, or holds as a tuple, list or set."""
    elements = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def backend_knowledge(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each place ``tree`` compares a backend's name to a string literal,
    compares anything to one of the backend ``names`` or keys a table by one, keeps a list of
    two or more of them, or makes one of ``BACKEND_CALLS``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literals = [text for side in sides for text in _literals(side)]
            found += [(node.lineno, f"backend name {text!r}") for text in literals if text in names]
            if any(map(_names_backend, sides)) and set(literals) - names:
                found.append((node.lineno, "a backend's name compared to a literal"))
        elif isinstance(node, ast.Dict):
            found += [(node.lineno, f"backend name {text!r}") for key in node.keys if key is not None
                      for text in _literals(key) if text in names]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(set(_literals(node)) & names) >= 2:
            found.append((node.lineno, "a list of backend names"))
        elif isinstance(node, ast.Call) and _called(node) in BACKEND_CALLS:
            found.append((node.lineno, _called(node)))
    return found


def test_no_module_outside_the_backends_knows_a_backend():
    """No module outside backends/ asks which backend an engine has, or opens a backend's runtime
    itself (spec.py's precision table names the backends that build each precision: the test
    above checks it against the registry)."""
    names = set(BACKENDS)
    used, wrong = set(), []
    for path in SOURCES:
        if PACKAGE / "backends" in path.parents or path.name == "spec.py":
            continue
        for line, what in sorted(backend_knowledge(ast.parse(path.read_text()), names)):
            key = (str(path.relative_to(PACKAGE)), what)
            if key in NOT_ABOUT_A_BACKEND:
                used.add(key)
            else:
                wrong.append(f"{key[0]}:{line}: {what}")
    assert not wrong, "backend knowledge outside densenet_trt/backends/:\n" + "\n".join(wrong)
    assert used == set(NOT_ABOUT_A_BACKEND), f"exceptions no longer needed: {set(NOT_ABOUT_A_BACKEND) - used}"


def test_the_backend_knowledge_check_finds_what_it_looks_for():
    names = set(BACKENDS)
    source = """
if engine.backend == "openvino": pass
if m.backend in ("onnxruntime", "toy"): pass
if backend != "toy": pass
if "tensorrt" == kind: pass
TARGETS = {("tensorrt", "engine"): 1}
PAIR = ("onnxruntime", "openvino")
session = onnxruntime.InferenceSession(path)
compiled = openvino.Core().compile_model(openvino.Core().read_model(path), "CPU")
"""
    found = {what for _, what in backend_knowledge(ast.parse(source), names)}
    assert found == {"backend name 'openvino'", "backend name 'onnxruntime'", "backend name 'tensorrt'",
                     "a backend's name compared to a literal", "a list of backend names", *BACKEND_CALLS}
    lines = sorted(line for line, _ in backend_knowledge(ast.parse(source), names))
    assert sorted(set(lines)) == list(range(2, 10))


def documented_order() -> dict[str, int]:
    """Each module (or package: backends, cli) by its row in docs/architecture.md's table."""
    rows = [line for line in (PACKAGE.parent / "docs" / "architecture.md").read_text().splitlines()
            if line.startswith("| `")]
    return {name: i for i, row in enumerate(rows) for name in re.findall(r"`([a-z0-9_/]+?)(?:\.py|/)`", row.split("|")[1])}


def row(order: dict[str, int], module: str) -> int:
    """``module``'s row: its own (``engine/build``), else its package's (``backends``)."""
    path = module.split(".", 1)[1].replace(".", "/")
    return order[path] if path in order else order[path.split("/")[0]]


def test_imports_go_down_the_documented_table():
    order = documented_order()
    up = []
    for path in SOURCES:
        source = module_name(path)
        if source in ("densenet_trt", "densenet_trt.__main__") or (path.name == "__init__.py" and not imports(path)):
            continue
        assert source.split(".", 1)[1].replace(".", "/") in order or source.split(".")[1] in order, (
            f"{source} is not in docs/architecture.md's table")
        for target in imports(path) - {"densenet_trt"}:
            here, there = row(order, source), row(order, target)
            if there > here:
                up.append(f"{source} -> {target}")
    assert up == [], "imports up docs/architecture.md's table: " + ", ".join(up)
