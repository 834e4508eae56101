"""The house rules of DESIGN.md, checked on the source: the core owns edge order and the engine owns
kernel choice. Only ``graphattn/graph.py``, ``graphattn/functional.py`` and the benchmarks
(``graphattn/bench/``) import ``sparse_kernels``; only ``graph.py`` passes the private ``_csr=``; only the
core reads an AttentionGraph's ``.csr`` (the benchmarks build engine graphs with the engine's API)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENGINE_USERS = {"graphattn/graph.py", "graphattn/functional.py"}


def _python_files(*folders: str) -> list[pathlib.Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _relative(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", _python_files("graphattn", "examples"), ids=_relative)
def test_only_the_core_imports_the_engine(path):
    rel = _relative(path)
    if rel in ENGINE_USERS or rel.startswith("graphattn/bench/"):
        return
    engine = sorted(name for name in _imports(ast.parse(path.read_text())) if name.split(".")[0] == "sparse_kernels")
    assert not engine, f"{rel} imports {engine}: use graphattn.functional / AttentionGraph instead"


@pytest.mark.parametrize("path", _python_files("graphattn", "examples"), ids=_relative)
def test_only_graph_py_passes_private_csr(path):
    rel = _relative(path)
    if rel == "graphattn/graph.py":
        return
    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and any(keyword.arg == "_csr" for keyword in node.keywords)]
    assert not calls, f"{rel} passes _csr= (line {calls[0].lineno}): use AttentionGraph.from_sorted_rows"


def _csr_reads(tree: ast.AST) -> list[int]:
    """Lines that read an ``.csr`` attribute (an AttentionGraph's engine graph: the core's business)."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "csr"]


#: the core's own tests (they check what the core builds and caches)
CORE_TESTS = {"tests/test_attention_graph.py", "tests/test_graph_attention.py", "tests/test_architecture.py"}


@pytest.mark.parametrize("path", _python_files("graphattn", "examples", "tests"), ids=_relative)
def test_only_the_core_reads_csr(path):
    rel = _relative(path)
    if rel in ENGINE_USERS or rel in CORE_TESTS:
        return
    lines = _csr_reads(ast.parse(path.read_text()))
    assert not lines, f"{rel} reads .csr (line {lines[0]}): use the AttentionGraph / functional API"


def test_the_rules_can_fail(tmp_path):
    bad = "import sparse_kernels as sk\nfrom sparse_kernels.csr import CSR\nAttentionGraph(e, 3, _csr=c)\ng.csr.row\n"
    tree = ast.parse(bad)
    assert {"sparse_kernels", "sparse_kernels.csr"} <= _imports(tree)
    assert any(any(k.arg == "_csr" for k in n.keywords) for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert _csr_reads(tree) == [4]


def test_the_engine_never_imports_pyg_or_graphattn():
    for path in _python_files("sparse_kernels"):
        bad = sorted(name for name in _imports(ast.parse(path.read_text()))
                     if name.split(".")[0] in ("torch_geometric", "graphattn"))
        assert not bad, f"{_relative(path)} imports {bad}"


def test_no_address_keys_in_the_engine():
    """Derived graph state lives on the CSR (``CSR.derived``), never in a table keyed by ``id(...)`` or
    ``data_ptr()``, which a new object can match after the old one is freed. The one ``data_ptr`` use left
    passes tensors to the C kernels."""
    import re

    engine = pathlib.Path(__file__).resolve().parents[1] / "sparse_kernels"
    offenders = []
    for path in engine.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            allowed = "return None if t is None else t.data_ptr()"
            if re.search(r"(?<![\w.])id\(", code) or ("data_ptr()" in code and allowed not in code):
                offenders.append(f"{path.relative_to(engine)}:{number}: {line.strip()}")
    assert offenders == []


# --------------------------------------------------------------------------- import graph
#: The layers of the two packages, lowest first: a module imports from its own layer or below, never above.
LAYERS = (
    ("sparse_kernels",),
    ("graphattn.graph", "graphattn.functional", "graphattn.config", "graphattn.progress", "graphattn.checkpoint",
     "graphattn.distributed", "graphattn.interrupt"),
    ("graphattn.nn", "graphattn.seq", "graphattn.adapters", "graphattn.data"),
    ("graphattn.models",),
    ("graphattn.sparsify", "graphattn.utils", "graphattn.training"),
    ("graphattn.bench", "graphattn.demo", "graphattn.cli", "graphattn.train_cli", "graphattn.targets",
     "graphattn.run_store", "graphattn.reproductions", "graphattn.reproduce", "graphattn.__main__", "graphattn"),
)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the modules of the two packages it imports, anywhere in the file (function-level imports
    included); ``from package import name`` is an import of ``package.name`` when that is a module."""
    paths = {_module_name(p): p for p in _python_files("graphattn", "sparse_kernels")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _unit(module: str) -> tuple[int, str]:
    """The layer and the entry of :data:`LAYERS` (a package or a top-level module) that ``module`` belongs to."""
    matches = [(len(prefix), n, prefix) for n, layer in enumerate(LAYERS) for prefix in layer
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} has no layer in LAYERS: add it"
    return max(matches)[1:]


def _layer(module: str) -> int:
    return _unit(module)[0]


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of ``graph`` (``[]`` when acyclic), by depth-first search."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:n]) for n in range(1, len(parts))}


def test_the_packages_import_no_cycle():
    graph = _import_graph()
    # a package's __init__ runs before its modules whatever they import: edges to an enclosing package
    # are not cycles of the design
    graph = {m: {t for t in targets if t not in _ancestors(m)} for m, targets in graph.items()}
    cycle = _cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_packages_of_the_layers_import_no_cycle():
    """The same between the entries of LAYERS (``graphattn.utils`` importing ``graphattn.sparsify.export``
    while ``graphattn.sparsify.bench`` imports ``graphattn.utils`` is a cycle of the two packages)."""
    units: dict[str, set[str]] = {}
    for module, targets in _import_graph().items():
        unit = _unit(module)[1]
        units.setdefault(unit, set()).update(_unit(t)[1] for t in targets if _unit(t)[1] != unit)
    cycle = _cycle(units)
    assert not cycle, "import cycle between packages: " + " -> ".join(cycle)


def test_no_module_imports_from_a_layer_above():
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})" for m, targets in sorted(_import_graph().items())
           for t in sorted(targets) if _layer(t) > _layer(m) and t not in _ancestors(m)]
    assert not bad, "\n".join(bad)


def test_the_graph_checks_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
    assert _layer("graphattn.utils.flops") > _layer("graphattn.models.gps") > _layer("graphattn.nn.gps_layer")
    assert "graphattn.models.inputs" in _import_graph()["graphattn.utils.flops"]
