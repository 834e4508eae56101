"""Corrupt raw files give one-line errors naming the file; processed files are atomic and keyed
by the raw files' content. Fixtures: the first 12 graphs of the embedded ogbg-molesol in OGB's
layout, and a 4-peptide LRGB release, both written to ``tmp_path``."""
import contextlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch_geometric.io.fs

from graphattn.data import CorruptDataError, MissingDataError, load_dataset

from helpers import gzip_lines as _lines, ogb_release, peptide_lines, peptides_release, write_gzip_lines as _write

GRAPHS = 12
SPLIT = {"train": range(0, 8), "valid": range(8, 10), "test": range(10, 12)}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHATTN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def root(tmp_path) -> Path:
    """Folder holding ``ogbg_molesol/``: the embedded dataset's first 12 graphs, OGB's layout."""
    return ogb_release(tmp_path / "data", split=SPLIT)


def _raw(root: Path, name: str) -> Path:
    return root / "ogbg_molesol" / "raw" / f"{name}.csv.gz"


def _split(root: Path, part: str) -> Path:
    return root / "ogbg_molesol" / "split" / "scaffold" / f"{part}.csv.gz"


def _load(root: Path):
    return load_dataset("ogbg-molesol", str(root))


def _processed(root: Path) -> list[Path]:
    return sorted((root / "ogbg_molesol").rglob("graphattn_data*"))


def _assert_corrupt(root: Path, path: Path, problem: str) -> str:
    with pytest.raises(CorruptDataError) as info:
        _load(root)
    message = str(info.value)
    assert info.value.path == str(path) and message.startswith(f"{path}: ")
    assert problem in message and "\n" not in message
    return message


def test_fixture_loads_as_ogb_reads_it(root):
    from ogb.io.read_graph_pyg import read_graph_pyg

    bench = _load(root)
    assert len(bench.dataset) == GRAPHS
    assert {k: v.tolist() for k, v in bench.split.items()} == {k: list(v) for k, v in SPLIT.items()}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        reference = read_graph_pyg(str(root / "ogbg_molesol" / "raw"), add_inverse_edge=True)
    labels = [float(v) for v in _lines(_raw(root, "graph-label"))]
    for graph, expected, label in zip(bench.dataset, reference, labels):
        assert graph.num_nodes == expected.num_nodes
        for key in ("x", "edge_index", "edge_attr"):
            assert graph[key].dtype == expected[key].dtype and torch.equal(graph[key], expected[key])
        assert graph.y.dtype == torch.float32 and graph.y.tolist() == [[pytest.approx(label)]]


def _keep_half(path: Path) -> None:
    lines = _lines(path)
    _write(path, lines[:len(lines) // 2])


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _damage_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC-32
    path.write_bytes(bytes(data))


def _edge_outside_graph(path: Path) -> None:
    lines = _lines(path)
    lines[-1] = "0,999"
    _write(path, lines)


def _append(value: str) -> Callable[[Path], None]:
    def append(path: Path) -> None:
        _write(path, _lines(path) + [value])
    return append


CORRUPT = {
    "half-length edge file": ("edge", _keep_half, "rows, but num-edge-list.csv.gz sums to"),
    "truncated gzip": ("edge", _truncate, "not a complete gzip file (EOFError"),
    "damaged gzip": ("node-feat", _damage_crc, "not a complete gzip file (BadGzipFile: CRC check failed"),
    "half the labels": ("graph-label", _keep_half, "6 rows, but num-node-list.csv.gz lists 12 graphs"),
    "edge outside its graph": ("edge", _edge_outside_graph, "edge 0,999 is out of range for graph 11, which has"),
    "node features short": ("node-feat", lambda p: _write(p, _lines(p)[:-1]), "rows, but num-node-list.csv.gz sums"),
    "extra edge count": ("num-edge-list", _append("3"), "13 rows, but num-node-list.csv.gz lists 12 graphs"),
    "non-integer count": ("num-node-list", _append("x"), "line 13: expected integers, got 'x'"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_raw_file_is_named(root, case):
    name, corrupt, problem = CORRUPT[case]
    corrupt(_raw(root, name))
    _assert_corrupt(root, _raw(root, name), problem)
    assert not _processed(root)


@pytest.mark.parametrize("part, value, problem", [
    ("valid", "12", "line 3: graph index 12 is out of range for 12 graphs"),
    ("valid", "-1", "line 3: graph index -1 is out of range"),
    ("test", "0", "line 3: graph 0 is also in train.csv.gz"),
    ("train", "3", "graph 3 is listed twice (line 4 and line 9)"),
])
def test_corrupt_split_is_named(root, part, value, problem):
    _append(value)(_split(root, part))
    _assert_corrupt(root, _split(root, part), problem)


def test_truncated_split_is_named(root):
    _truncate(_split(root, "train"))
    _assert_corrupt(root, _split(root, "train"), "not a complete gzip file")


def test_missing_count_file_is_named(root):
    _raw(root, "num-edge-list").unlink()
    with pytest.raises(MissingDataError, match=r"missing raw/num-edge-list\.csv\.gz under .*ogbg_molesol"):
        _load(root)


def test_repaired_raw_file_is_read_again(root):
    """The issue's sequence: corrupt -> error; restore -> loads, nothing deleted by hand."""
    good = _load(root).dataset
    edge = _raw(root, "edge")
    original = edge.read_bytes()
    _keep_half(edge)
    _assert_corrupt(root, edge, "rows, but num-edge-list.csv.gz sums to")
    edge.write_bytes(original)
    again = _load(root).dataset
    assert len(again) == GRAPHS and torch.equal(again._data.edge_index, good._data.edge_index)


def test_processed_file_follows_raw_content(root):
    """A consistent change of a raw file is processed again; older processed files go, including
    one from before processed files were keyed (the issue's stale cache)."""
    first = _load(root).dataset
    legacy = Path(first.processed_dir) / "graphattn_data.pt"
    legacy.write_bytes(b"stale")
    labels = _raw(root, "graph-label")
    original = labels.read_bytes()
    _write(labels, ["1.5"] * GRAPHS)
    changed = _load(root).dataset
    assert changed.processed_paths != first.processed_paths
    assert torch.equal(changed._data.y, torch.full((GRAPHS, 1), 1.5))
    assert _processed(root) == [Path(changed.processed_paths[0])]
    labels.write_bytes(original)
    assert torch.equal(_load(root).dataset._data.y, first._data.y)


def test_failure_while_processing_leaves_no_processed_file(root):
    seen = []

    def fail_on_fifth(graph):
        seen.append(graph)
        if len(seen) == 5:
            raise RuntimeError("interrupted")
        return graph

    with pytest.raises(RuntimeError, match="interrupted"):
        load_dataset("ogbg-molesol", str(root), pre_transform=fail_on_fifth)
    assert not _processed(root)


def test_interrupted_save_leaves_no_partial_file(root, monkeypatch):
    save = torch_geometric.io.fs.torch_save

    def half_then_fail(data, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch_geometric.io.fs, "torch_save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        _load(root)
    assert not _processed(root)
    monkeypatch.setattr(torch_geometric.io.fs, "torch_save", save)
    assert len(_load(root).dataset) == GRAPHS


@pytest.mark.slow
def test_train_cli_reports_corrupt_file_in_one_line(root, tmp_path):
    _keep_half(_raw(root, "graph-label"))
    result = subprocess.run([sys.executable, "-m", "graphattn.cli", "train", "--no-progress", "--dataset",
                             "ogbg-molesol", "--root", str(root), "--epochs", "1"], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "GRAPHATTN_CACHE": str(tmp_path / "cache")})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"graphattn train: error: {_raw(root, 'graph-label')}: 6 rows, but num-node-list.csv.gz lists 12 graphs"]


# LRGB Peptides-func ---------------------------------------------------------------------------

SMILES = ["CC(=O)NC", "NCC(=O)O", "CCO", "c1ccccc1O"]
PEPTIDE_SPLIT = {"train": [0, 1], "val": [2], "test": [3]}


@pytest.fixture
def peptides(tmp_path) -> Path:
    """An LRGB release folder with 4 peptides."""
    return peptides_release(tmp_path / "lrgb", SMILES, {"train": [0, 1], "valid": [2], "test": [3]})


def _csv(folder: Path) -> Path:
    return folder / "raw" / "peptide_multi_class_dataset.csv.gz"


def _pickle(folder: Path) -> Path:
    return folder / "splits_random_stratified_peptide.pickle"


def _assert_corrupt_peptides(folder: Path, path: Path, problem: str) -> None:
    with pytest.raises(CorruptDataError) as info:
        load_dataset("peptides-func", str(folder))
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value) and "\n" not in str(info.value)


def _dump(split) -> Callable[[Path], None]:
    def dump(path: Path) -> None:
        path.write_bytes(pickle.dumps(split))
    return dump


PEPTIDE_CSV = {
    "truncated gzip": (_truncate, "not a complete gzip file (EOFError"),
    "no labels column": (lambda p: _write(p, [line.rsplit(",", 2)[0] for line in peptide_lines(SMILES)]),
                         "no column 'labels'"),
    "short label": (lambda p: _write(p, peptide_lines(SMILES)[:3] + ['2,CCO,X,"[0, 1]",id2']),
                    "line 4: labels '[0, 1]' is not a list of 10 values 0/1"),
    "bad SMILES": (lambda p: _write(p, peptide_lines(SMILES[:2] + ["C1CC(", SMILES[3]])),
                   "line 4: SMILES 'C1CC(' does not parse"),
}


@pytest.mark.parametrize("case", PEPTIDE_CSV)
def test_corrupt_peptides_csv_is_named(peptides, case):
    corrupt, problem = PEPTIDE_CSV[case]
    corrupt(_csv(peptides))
    _assert_corrupt_peptides(peptides, _csv(peptides), problem)
    assert not list(peptides.rglob("peptides_func*"))


PEPTIDE_SPLITS = {
    "truncated pickle": (_truncate, "not a complete pickle"),
    "index out of range": (_dump({**PEPTIDE_SPLIT, "test": [3, 4]}), "'test'[1]: graph index 4 is out of range for 4"),
    "peptide in two parts": (_dump({**PEPTIDE_SPLIT, "val": [2, 0]}), "'val'[1]: graph 0 is also in train"),
    "no val part": (_dump({"train": [0, 1], "test": [3]}), "no 'val' entry"),
}


@pytest.mark.parametrize("case", PEPTIDE_SPLITS)
def test_corrupt_peptides_split_is_named(peptides, case):
    corrupt, problem = PEPTIDE_SPLITS[case]
    corrupt(_pickle(peptides))
    _assert_corrupt_peptides(peptides, _pickle(peptides), problem)


def test_repaired_peptides_csv_is_read_again(peptides):
    assert len(load_dataset("peptides-func", str(peptides)).dataset) == 4
    original = _csv(peptides).read_bytes()
    _truncate(_csv(peptides))
    _assert_corrupt_peptides(peptides, _csv(peptides), "not a complete gzip file")
    _csv(peptides).write_bytes(original)
    assert load_dataset("peptides-func", str(peptides)).dataset[2].x.size(0) == 3
