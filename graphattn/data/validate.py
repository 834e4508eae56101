"""Reading raw dataset files with their consistency checks.

Every reader here parses a release file and checks it against the files it must agree with
(OGB: the per-graph node and edge counts; LRGB: the number of peptides). A file that cannot be
read to its end, or that disagrees, raises :class:`CorruptDataError`, whose message is one
line: the file's path, then what is wrong with it.
"""
from __future__ import annotations

import ast
import gzip
import os.path as osp
import pickle
import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

__all__ = ["CorruptDataError", "OGBRaw", "read_ogb_raw", "read_ogb_split", "read_peptides", "read_peptides_split"]

#: OGB's split files, in order
OGB_SPLITS = ("train", "valid", "test")


class CorruptDataError(ValueError):
    """A dataset file is unreadable or disagrees with the files it must match.

    Attributes:
        path: the file at fault.
        problem: what is wrong with it (one line).
    """

    def __init__(self, path: str, problem: str):
        super().__init__(path, problem)
        self.path = path
        self.problem = " ".join(problem.split())

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def read_csv(path: str, header: Optional[int] = None) -> pd.DataFrame:
    """``path`` (a gzipped CSV) as a frame; an empty file gives an empty frame.

    Raises:
        CorruptDataError: the gzip stream is truncated or damaged, or the CSV is malformed.
    """
    try:
        return pd.read_csv(path, compression="gzip", header=header)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # truncated stream, bad CRC, not gzip
        raise CorruptDataError(path, f"not a complete gzip file ({_reason(error)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise CorruptDataError(path, f"malformed CSV ({_reason(error)})") from None


def _numeric(frame: pd.DataFrame, path: str, width: int, integer: bool, first_line: int = 1) -> np.ndarray:
    """``frame`` as an ``[rows, width]`` array: int64 when every column is integer, else float32
    (``integer=True`` requires integers). ``first_line`` is the file line of the first row."""
    if frame.shape[0] == 0:
        return np.zeros((0, width), dtype=np.int64)
    if frame.shape[1] != width:
        raise CorruptDataError(path, f"{frame.shape[1]} columns, expected {width}")
    if all(pd.api.types.is_integer_dtype(t) for t in frame.dtypes):
        return frame.to_numpy(np.int64, copy=True)  # writable (pandas may hand out a read-only view)
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = np.isnan(values) & frame.notna().to_numpy()
    if integer:
        bad |= ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise CorruptDataError(path, f"line {row + first_line}: expected {'integers' if integer else 'numbers'}, "
                                     f"got {','.join(map(str, frame.iloc[row]))!r}")
    return values.astype(np.int64) if integer else values.astype(np.float32)


def _counts(path: str) -> np.ndarray:
    counts = _numeric(read_csv(path), path, 1, integer=True)[:, 0]
    if (counts < 0).any():
        row = int(np.argmax(counts < 0))
        raise CorruptDataError(path, f"line {row + 1}: negative count {counts[row]}")
    return counts


def _rows(array: np.ndarray, path: str, expected: int, source: str) -> np.ndarray:
    if len(array) != expected:
        raise CorruptDataError(path, f"{len(array):,} rows, but {source}")
    return array


@dataclass
class OGBRaw:
    """The arrays of an OGB graph dataset's ``raw/`` folder, checked against each other.

    ``edge`` ``[2, E]`` holds per-graph node indices, one column per edge as listed (before OGB
    adds the inverse edges); features are int64 when the file holds integers, else float32.
    """

    num_nodes: np.ndarray
    num_edges: np.ndarray
    edge: np.ndarray
    node_feat: Optional[np.ndarray]
    edge_feat: Optional[np.ndarray]
    labels: np.ndarray

    @property
    def num_graphs(self) -> int:
        return len(self.num_nodes)


def _table(path: str, expected: int, source: str) -> np.ndarray:
    """A feature file (any number of numeric columns) with ``expected`` rows."""
    frame = read_csv(path)
    return _rows(_numeric(frame, path, frame.shape[1], integer=False), path, expected, source)


def read_ogb_raw(raw_dir: str, num_tasks: int, node_feat: bool = True, edge_feat: bool = True) -> OGBRaw:
    """Reads and checks an OGB graph dataset's ``raw/`` folder (CSV release).

    Checks: every file is a complete gzip stream; ``num-edge-list`` has one count per graph of
    ``num-node-list``; ``edge`` and ``edge-feat`` have as many rows as ``num-edge-list`` sums to,
    ``node-feat`` as many as ``num-node-list`` sums to; every edge joins nodes of its own graph;
    ``graph-label`` has one row per graph and ``num_tasks`` columns.

    Raises:
        CorruptDataError: the first problem found, naming its file.
    """
    def path(name: str) -> str:
        return osp.join(raw_dir, f"{name}.csv.gz")

    num_nodes = _counts(path("num-node-list"))
    if len(num_nodes) == 0:
        raise CorruptDataError(path("num-node-list"), "lists no graphs")
    graphs = f"num-node-list.csv.gz lists {len(num_nodes):,} graphs"
    num_edges = _rows(_counts(path("num-edge-list")), path("num-edge-list"), len(num_nodes), graphs)
    total_nodes = f"num-node-list.csv.gz sums to {int(num_nodes.sum()):,} nodes"
    total_edges = f"num-edge-list.csv.gz sums to {int(num_edges.sum()):,} edges"

    edge = _rows(_numeric(read_csv(path("edge")), path("edge"), 2, integer=True), path("edge"),
                 int(num_edges.sum()), total_edges)
    graph_of_edge = np.repeat(np.arange(len(num_nodes)), num_edges)
    limit = num_nodes[graph_of_edge]
    bad = ((edge < 0) | (edge >= limit[:, None])).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        graph = int(graph_of_edge[row])
        raise CorruptDataError(path("edge"), f"line {row + 1}: edge {edge[row, 0]},{edge[row, 1]} is out of range "
                                             f"for graph {graph}, which has {num_nodes[graph]} nodes "
                                             f"(num-node-list.csv.gz)")

    labels = _table(path("graph-label"), len(num_nodes), graphs)
    if labels.shape[1] != num_tasks:
        raise CorruptDataError(path("graph-label"), f"{labels.shape[1]} columns, expected {num_tasks} (one per task)")
    return OGBRaw(
        num_nodes=num_nodes, num_edges=num_edges, edge=edge.T.copy(),
        node_feat=_table(path("node-feat"), int(num_nodes.sum()), total_nodes) if node_feat else None,
        edge_feat=_table(path("edge-feat"), int(num_edges.sum()), total_edges) if edge_feat else None,
        labels=labels)


def _check_partition(parts: dict[str, np.ndarray], num_graphs: int, path: Callable[[str], str],
                     position: Callable[[str, int], str]) -> None:
    """Every index of every part lies in ``[0, num_graphs)`` and no index appears twice, within
    a part or across parts (OGB's and LRGB's splits partition the graphs). ``parts`` is keyed
    by how messages name the parts; ``path(part)`` is the part's file, ``position(part, i)``
    where its ``i``-th index is written."""
    owner = np.full(num_graphs, -1)
    names = list(parts)
    for k, (name, index) in enumerate(parts.items()):
        outside = (index < 0) | (index >= num_graphs)
        if outside.any():
            i = int(np.argmax(outside))
            raise CorruptDataError(path(name), f"{position(name, i)}: graph index {index[i]} is out of range for "
                                               f"{num_graphs:,} graphs")
        values, counts = np.unique(index, return_counts=True)
        if (counts > 1).any():
            value = int(values[np.argmax(counts > 1)])
            first, second = np.flatnonzero(index == value)[:2]
            raise CorruptDataError(path(name), f"graph {value} is listed twice ({position(name, int(first))} and "
                                               f"{position(name, int(second))})")
        taken = owner[index] >= 0
        if taken.any():
            i = int(np.argmax(taken))
            raise CorruptDataError(path(name), f"{position(name, i)}: graph {index[i]} is also in "
                                               f"{names[owner[index[i]]]}")
        owner[index] = k


def read_ogb_split(split_dir: str, num_graphs: int) -> dict[str, np.ndarray]:
    """``{"train", "valid", "test"}`` -> graph indices from ``<split_dir>/<part>.csv.gz``, checked:
    complete gzip, one integer column, indices in ``[0, num_graphs)``, no graph in two places.

    Raises:
        CorruptDataError: the first problem found, naming its file.
    """
    def path(name: str) -> str:
        return osp.join(split_dir, name)

    files = {f"{s}.csv.gz": s for s in OGB_SPLITS}
    parts = {f: _numeric(read_csv(path(f)), path(f), 1, integer=True)[:, 0] for f in files}
    _check_partition(parts, num_graphs, path, lambda name, i: f"line {i + 1}")
    return {s: parts[f] for f, s in files.items()}


def read_peptides(path: str, targets: Optional[Sequence[str]], num_labels: int) -> tuple[list[str], np.ndarray]:
    """SMILES and labels ``[N, num_labels]`` (float32) of an LRGB peptides CSV.

    ``targets=None`` reads Peptides-func's ``labels`` column (a list of ``num_labels`` 0/1 values
    per row); otherwise the named numeric columns (Peptides-struct).

    Raises:
        CorruptDataError: truncated gzip, a missing column, an empty SMILES, a label of the
            wrong length or type (the message gives the file's line).
    """
    frame = read_csv(path, header=0)
    wanted = ["smiles"] + (["labels"] if targets is None else list(targets))
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise CorruptDataError(path, f"no column {', '.join(map(repr, missing))} (columns: "
                                     f"{', '.join(map(str, frame.columns)) or 'none'})")
    if len(frame) == 0:
        raise CorruptDataError(path, "no peptides")
    smiles = frame["smiles"]
    empty = smiles.isna().to_numpy() | (smiles.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        raise CorruptDataError(path, f"line {int(np.argmax(empty)) + 2}: empty SMILES")
    if targets is not None:
        values = _numeric(frame[list(targets)], path, len(targets), integer=False, first_line=2)
        return smiles.astype(str).tolist(), values.astype(np.float32)
    labels = np.zeros((len(frame), num_labels), dtype=np.float32)
    for row, text in enumerate(frame["labels"]):
        try:
            value = np.asarray(ast.literal_eval(str(text)), dtype=np.float32)
        except (ValueError, SyntaxError, TypeError):
            value = None
        if value is None or value.shape != (num_labels,) or not np.isin(value, (0, 1)).all():
            raise CorruptDataError(path, f"line {row + 2}: labels {str(text)[:60]!r} is not a list of "
                                         f"{num_labels} values 0/1")
        labels[row] = value
    return smiles.astype(str).tolist(), labels


def read_peptides_split(path: str, num_graphs: int) -> dict[str, np.ndarray]:
    """``{"train", "valid", "test"}`` -> indices from LRGB's split pickle (keys ``train``/``val``/
    ``test``), checked: a complete pickle of a dict of integer arrays, indices in
    ``[0, num_graphs)``, no peptide in two places.

    Raises:
        CorruptDataError: the first problem found, naming the file.
    """
    try:
        with open(path, "rb") as f:
            split = pickle.load(f)
    except Exception as error:  # a damaged pickle can fail in any unpickling step
        raise CorruptDataError(path, f"not a complete pickle ({_reason(error)})") from None
    if not isinstance(split, dict):
        raise CorruptDataError(path, f"holds a {type(split).__name__}, expected a dict with train/val/test")
    parts = {}
    for key in ("train", "val", "test"):
        if key not in split:
            raise CorruptDataError(path, f"no {key!r} entry (entries: {', '.join(map(repr, split))})")
        index = np.asarray(split[key])
        if index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
            raise CorruptDataError(path, f"{key!r} is not a list of integer indices "
                                         f"(dtype {index.dtype}, shape {index.shape})")
        parts[key] = index.astype(np.int64)
    _check_partition(parts, num_graphs, lambda name: path, lambda name, i: f"{name!r}[{i}]")
    return {"train": parts["train"], "valid": parts["val"], "test": parts["test"]}
