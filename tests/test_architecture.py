"""The house rules of DESIGN.md, checked on the source: the core owns edge order and the engine owns
kernel choice. Only ``graphattn/graph.py``, ``graphattn/functional.py`` and the benchmarks
(``graphattn/bench/``) import ``sparse_kernels``; only ``graph.py`` passes the private ``_csr=``."""
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


def test_the_rules_can_fail(tmp_path):
    bad = "import sparse_kernels as sk\nfrom sparse_kernels.csr import CSR\nAttentionGraph(e, 3, _csr=c)\n"
    tree = ast.parse(bad)
    assert {"sparse_kernels", "sparse_kernels.csr"} <= _imports(tree)
    assert any(any(k.arg == "_csr" for k in n.keywords) for n in ast.walk(tree) if isinstance(n, ast.Call))


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
            if re.search(r"(?<![\w.])id\(", code) or ("data_ptr()" in code and "return None if t is None else t.data_ptr()" not in code):
                offenders.append(f"{path.relative_to(engine)}:{number}: {line.strip()}")
    assert offenders == []
