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
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

__all__ = ["CorruptDataError", "OGBRaw", "read_ogb_raw", "read_ogb_split", "read_peptides", "read_peptides_split",
           "PLANETOID_FILES", "check_planetoid_raw",
           "TU_FILES", "check_tu_raw"]

#: OGB's split files, in order
OGB_SPLITS = ("train", "valid", "test")
#: the suffixes of a Planetoid release's files ``ind.<name>.<suffix>``
PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
#: the files of a TU dataset ``<NAME>_<suffix>.txt`` that graphattn reads (the optional ones are not read)
TU_FILES = ("A", "graph_indicator", "graph_labels", "node_labels")
#: nodes of the public Planetoid split's validation set (they follow the training nodes)
PLANETOID_VALID = 500


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


def _planetoid_pickle(path: str):
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # the release pickles SciPy matrices under the old module name scipy.sparse.csr
            warnings.filterwarnings("ignore", ".*scipy.sparse.csr.*", DeprecationWarning)
            return pickle.load(f, encoding="latin1")
    except Exception as error:  # a damaged pickle can fail in any unpickling step
        raise CorruptDataError(path, f"not a complete pickle ({_reason(error)})") from None


def _planetoid_matrix(path: str) -> tuple[int, int]:
    """The shape of a Planetoid feature or label matrix (a SciPy sparse matrix or a NumPy array) with 0/1
    or real entries."""
    matrix = _planetoid_pickle(path)
    shape = getattr(matrix, "shape", None)
    if not hasattr(matrix, "dtype") or shape is None or len(shape) != 2:
        raise CorruptDataError(path, f"holds a {type(matrix).__name__}, expected a 2-D matrix")
    values = matrix.data if hasattr(matrix, "tocsr") else np.asarray(matrix)
    if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
        raise CorruptDataError(path, f"expected finite numbers, got dtype {values.dtype} or non-finite entries")
    return int(shape[0]), int(shape[1])


def check_planetoid_raw(raw_dir: str, prefix: str) -> None:
    """Checks a Planetoid release (``<raw_dir>/ind.<prefix>.{x,tx,allx,y,ty,ally,graph,test.index}``, the
    files of Yang et al. 2016 that ``torch_geometric.io.read_planetoid_data`` reads) before it is read.

    Checks: every pickle is complete and holds a 2-D numeric matrix (``graph``: a dict of neighbour
    lists); ``x``/``y``, ``tx``/``ty``, ``allx``/``ally`` have equal row counts, the three feature files
    (and the three label files) equal widths; ``test.index`` has one integer per ``tx`` row, no repeat,
    all after ``allx``'s rows; the public split's 500 validation nodes fit after ``x``'s rows inside
    ``allx``; every node the graph names lies below the node count (``allx``'s rows plus the test
    index range); the test indices are the nodes after ``allx``'s rows, without gaps except in CiteSeer
    (whose isolated test nodes PyG fills with zero rows).

    Raises:
        CorruptDataError: the first problem found, naming its file.
    """
    def path(name: str) -> str:
        return osp.join(raw_dir, f"ind.{prefix}.{name}")

    shapes = {name: _planetoid_matrix(path(name)) for name in ("x", "tx", "allx", "y", "ty", "ally")}
    for features, labels in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        if shapes[labels][0] != shapes[features][0]:
            raise CorruptDataError(path(labels), f"{shapes[labels][0]:,} rows, but ind.{prefix}.{features} has "
                                                 f"{shapes[features][0]:,}")
    for group in (("tx", "allx"), ("ty", "ally"), ("y",)):
        reference = "x" if group[0].endswith("x") else "ty"
        for name in group:
            if name != reference and shapes[name][1] != shapes[reference][1]:
                raise CorruptDataError(path(name), f"{shapes[name][1]:,} columns, but ind.{prefix}.{reference} has "
                                                   f"{shapes[reference][1]:,}")
    labelled = shapes["allx"][0]
    if shapes["x"][0] + PLANETOID_VALID > labelled:
        raise CorruptDataError(path("allx"), f"{labelled:,} rows: too few for the {shapes['x'][0]:,} training "
                                             f"nodes of ind.{prefix}.x and {PLANETOID_VALID} validation nodes")
    test = _numeric(_text_lines(path("test.index")), path("test.index"), 1, integer=True)[:, 0]
    if len(test) != shapes["tx"][0]:
        raise CorruptDataError(path("test.index"), f"{len(test):,} indices, but ind.{prefix}.tx has "
                                                   f"{shapes['tx'][0]:,} rows")
    if len(test) and (test < labelled).any():
        line = int(np.argmax(test < labelled))
        raise CorruptDataError(path("test.index"), f"line {line + 1}: node {test[line]} is among the "
                                                   f"{labelled:,} nodes of ind.{prefix}.allx")
    values, counts = np.unique(test, return_counts=True)
    if (counts > 1).any():
        raise CorruptDataError(path("test.index"), f"node {values[np.argmax(counts > 1)]} is listed twice")
    num_nodes = int(test.max()) + 1 if len(test) else labelled
    # the test nodes follow allx's rows; only CiteSeer's range has gaps (its isolated nodes, filled with zeros)
    if len(test) and (test.min() != labelled or (prefix != "citeseer" and num_nodes != labelled + len(test))):
        raise CorruptDataError(path("test.index"), f"indices {test.min()}..{test.max()} do not cover the "
                                                   f"{len(test):,} nodes after the {labelled:,} of ind.{prefix}.allx")
    graph = _planetoid_pickle(path("graph"))
    if not isinstance(graph, dict):
        raise CorruptDataError(path("graph"), f"holds a {type(graph).__name__}, expected a dict of neighbour lists")
    for node, neighbours in graph.items():
        try:
            ids = np.asarray([node, *neighbours])
        except TypeError:
            raise CorruptDataError(path("graph"), f"node {node!r}: neighbours {neighbours!r} are not a list") from None
        if not np.issubdtype(ids.dtype, np.integer) or ((ids < 0) | (ids >= num_nodes)).any():
            raise CorruptDataError(path("graph"), f"node {node!r} or one of its neighbours is not a node id in "
                                                  f"[0, {num_nodes:,}) (allx rows and test.index)")


def _text_lines(path: str) -> pd.DataFrame:
    """A plain text file of one value per line as a one-column frame."""
    try:
        return pd.read_csv(path, header=None, sep=r"\s+")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise CorruptDataError(path, f"not one integer per line ({_reason(error)})") from None


def _tu_table(path: str, width: Optional[int] = None) -> np.ndarray:
    """A TU text file of comma-separated integers (``width`` columns, any number when ``None``)."""
    try:
        frame = pd.read_csv(path, header=None, sep=",", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise CorruptDataError(path, f"not comma-separated integers ({_reason(error)})") from None
    if frame.shape[0] == 0:
        raise CorruptDataError(path, "is empty")
    return _numeric(frame, path, frame.shape[1] if width is None else width, integer=True)


def check_tu_raw(raw_dir: str, prefix: str) -> None:
    """Checks a TU graph-classification release (``<raw_dir>/<prefix>_{A,graph_indicator,graph_labels,
    node_labels}.txt``, Morris et al.'s format that ``torch_geometric.io.read_tu_data`` reads) before it is read.

    Checks: every file holds comma-separated integers (``A`` two per line); ``graph_indicator`` numbers the
    graphs ``1..N`` in non-decreasing order (each graph's nodes consecutive, as the reader assumes) with ``N``
    the lines of ``graph_labels``, and no graph without nodes; ``node_labels`` has one line per node; every
    edge of ``A`` joins two nodes ``1..n`` of the same graph.

    Raises:
        CorruptDataError: the first problem found, naming its file.
    """
    def path(name: str) -> str:
        return osp.join(raw_dir, f"{prefix}_{name}.txt")

    labels = _tu_table(path("graph_labels"), 1)[:, 0]
    graphs = f"{prefix}_graph_labels.txt has {len(labels):,} graphs"
    indicator = _tu_table(path("graph_indicator"), 1)[:, 0]
    if (np.diff(indicator) < 0).any():
        line = int(np.argmax(np.diff(indicator) < 0)) + 2
        raise CorruptDataError(path("graph_indicator"), f"line {line}: graph {indicator[line - 1]} after graph "
                                                        f"{indicator[line - 2]} (the nodes of a graph must be "
                                                        f"consecutive)")
    outside = (indicator < 1) | (indicator > len(labels))
    if outside.any():
        line = int(np.argmax(outside)) + 1
        raise CorruptDataError(path("graph_indicator"), f"line {line}: graph {indicator[line - 1]} is outside "
                                                        f"1..{len(labels):,} ({graphs})")
    empty = np.setdiff1d(np.arange(1, len(labels) + 1), indicator)
    if empty.size:
        raise CorruptDataError(path("graph_indicator"), f"graph {empty[0]} has no node ({graphs})")
    num_nodes = len(indicator)
    _rows(_tu_table(path("node_labels")), path("node_labels"), num_nodes,
          f"{prefix}_graph_indicator.txt has {num_nodes:,} nodes")
    edges = _tu_table(path("A"), 2)
    outside = (edges < 1) | (edges > num_nodes)
    if outside.any():
        line = int(np.argmax(outside.any(axis=1)))
        raise CorruptDataError(path("A"), f"line {line + 1}: edge {edges[line, 0]},{edges[line, 1]} names a node "
                                          f"outside 1..{num_nodes:,} ({prefix}_graph_indicator.txt)")
    crossing = indicator[edges[:, 0] - 1] != indicator[edges[:, 1] - 1]
    if crossing.any():
        line = int(np.argmax(crossing))
        raise CorruptDataError(path("A"), f"line {line + 1}: edge {edges[line, 0]},{edges[line, 1]} joins graphs "
                                          f"{indicator[edges[line, 0] - 1]} and {indicator[edges[line, 1] - 1]}")
