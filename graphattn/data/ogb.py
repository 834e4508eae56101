"""OGB graph property prediction datasets (``ogbg-mol*``) read from OGB's release layout.

A dataset folder ``<root>/<ogbg_name>/`` holds ``raw/*.csv.gz``, ``split/<split>/*.csv.gz``
and ``RELEASE_v1.txt``, exactly as OGB ships it. :class:`OGBGraphDataset` reads it as
``ogb.io.read_graph_pyg`` does, with OGB's own ``master.csv`` meta-information, so graphs,
labels and splits are identical to ``ogb.graphproppred.PygGraphPropPredDataset``; unlike that
class it never prompts on stdin, never downloads, checks the raw files against each other
before processing (:class:`~graphattn.data.validate.CorruptDataError` names the file at fault),
saves its processed file with PyG's ``InMemoryDataset.save`` (which loads on torch >= 2.6,
where ogb 1.3.6's plain ``torch.load`` fails) atomically and under a name keyed by the raw
files' content (a repaired raw file is processed again, nothing stale is loaded), and writes
the processed file to a cache folder when the data folder is read-only.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import os.path as osp
import stat
import uuid
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from ..progress import track
from .validate import OGB_SPLITS, read_ogb_raw, read_ogb_split

__all__ = ["OGBGraphDataset", "ogb_meta", "default_cache_dir", "processed_location", "raw_fingerprint",
           "save_processed", "MissingDataError"]

#: part of every raw fingerprint: changing it retires all processed files written before
_PROCESSED_FORMAT = b"graphattn processed v1"


class MissingDataError(FileNotFoundError):
    """A dataset's files are not where the loader looks; the message says what to place where."""


def default_cache_dir() -> str:
    """``$GRAPHATTN_CACHE`` or ``~/.cache/graphattn``."""
    return os.environ.get("GRAPHATTN_CACHE", osp.join(osp.expanduser("~"), ".cache", "graphattn"))


def ogb_meta(name: str) -> pd.Series:
    """OGB's meta-information of ``name`` (a column of ``ogb/graphproppred/master.csv``)."""
    import ogb.graphproppred

    master = pd.read_csv(osp.join(osp.dirname(ogb.graphproppred.__file__), "master.csv"), index_col=0,
                         keep_default_na=False)
    if name not in master:
        known = ", ".join(c for c in master.columns if c.startswith("ogbg-"))
        raise ValueError(f"unknown OGB graph dataset {name!r}; known: {known}")
    return master[name]


def _writable(path: str) -> bool:
    """Whether ``path`` (or its nearest existing parent) may be written; a folder without
    write bits counts as read-only even for root, who could write it anyway."""
    probe = path
    while not osp.exists(probe):
        probe = osp.dirname(probe) or "."
    return os.access(probe, os.W_OK) and bool(os.stat(probe).st_mode & stat.S_IWUSR)


def processed_location(folder: str, stem: str, cache_dir: str, use_cache: bool = False,
                       pre_transform: Optional[Callable] = None) -> str:
    """``<folder>/processed`` when writable (OGB's convention), else a cache folder keyed by
    the data folder's path; a ``pre_transform`` gets a folder of its own (keyed by its repr),
    so that datasets processed with different transforms live side by side."""
    suffix = "" if pre_transform is None else "_" + hashlib.sha1(repr(pre_transform).encode()).hexdigest()[:8]
    local = osp.join(folder, "processed" + suffix)
    if not use_cache and _writable(local):
        return local
    tag = hashlib.sha1(folder.encode()).hexdigest()[:10]
    return osp.join(cache_dir, "processed", f"{stem}-{tag}{suffix}")


def raw_fingerprint(paths: Sequence[str]) -> str:
    """16 hex digits of a BLAKE2b hash of the files' names, sizes and bytes.

    Processed files are named by it, so that any change of a raw file (a repaired or updated
    copy included) selects a processed file of its own instead of a stale one; hashing reads
    the raw files once per load, which for OGB's and LRGB's compressed files is milliseconds.
    """
    digest = hashlib.blake2b(_PROCESSED_FORMAT, digest_size=8)
    for path in paths:
        digest.update(f"\0{osp.basename(path)}\0{os.path.getsize(path)}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def save_processed(graphs: Sequence[Data], path: str, stale: str) -> None:
    """Saves ``graphs`` with ``InMemoryDataset.save`` to ``path`` atomically, then deletes the
    files of ``path``'s folder that match the glob ``stale`` (processed files of earlier raw files).

    The graphs go to a temporary file in the same folder, which is synced and renamed onto
    ``path`` once complete: an interrupted save leaves no ``path``, and processes saving the same
    dataset at once (ranks of a distributed run) each replace it with a whole file.
    """
    folder = osp.dirname(path)
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        InMemoryDataset.save(graphs, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    for old in glob.glob(osp.join(glob.escape(folder), stale)):
        if osp.abspath(old) != osp.abspath(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(old)


class OGBGraphDataset(InMemoryDataset):
    r"""An ``ogbg-*`` dataset in OGB's layout, as a PyG :class:`~torch_geometric.data.InMemoryDataset`.

    Each graph has ``x`` ``[N, 9]`` (int64 atom features for molecules), ``edge_index``
    ``[2, E]`` (both directions), ``edge_attr`` ``[E, 3]`` and ``y`` ``[1, num_tasks]``
    (float32 for regression and for classification with missing labels, else int64).

    Args:
        name: e.g. ``"ogbg-molhiv"``.
        root: folder containing ``<ogbg_name>/`` (``ogbg-molhiv`` -> ``ogbg_molhiv``).
        cache_dir: where the processed file goes when ``root`` is read-only (or always, with
            ``use_cache=True``).
        transform, pre_transform: PyG transforms.

    Raises:
        MissingDataError: a raw or split file is missing.
        CorruptDataError: a raw file is unreadable or disagrees with the others (checked when
            processing, that is, whenever the raw files' content has no processed file yet).
    """

    def __init__(self, name: str, root: str, cache_dir: Optional[str] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 use_cache: bool = False):
        self.use_cache = use_cache
        self.name = name
        self.meta = ogb_meta(name)
        self.dir_name = name.replace("-", "_")
        self.folder = osp.join(osp.abspath(root), self.dir_name)
        self.cache_dir = cache_dir or default_cache_dir()
        self.num_tasks = int(self.meta["num tasks"])
        self.eval_metric = str(self.meta["eval metric"])
        self.task_type = str(self.meta["task type"])
        if self.task_type == "subtoken prediction":
            raise ValueError(f"{name}: sequence labels ({self.task_type}) are not supported")
        self._check_files()
        self.raw_key = raw_fingerprint(self.raw_paths)
        super().__init__(self.folder, transform, pre_transform, log=False)
        self.load(self.processed_paths[0])

    def _check_files(self) -> None:
        needed = [osp.join("raw", f) for f in self.raw_file_names]
        needed += [osp.join("split", str(self.meta["split"]), f"{s}.csv.gz") for s in OGB_SPLITS]
        missing = [f for f in needed if not osp.exists(osp.join(self.folder, f))]
        if missing:
            raise MissingDataError(
                f"{self.name}: missing {', '.join(missing)} under {self.folder}. Place OGB's release "
                f"folder '{self.dir_name}' (raw/, split/, mapping/) inside the --root folder.")

    @property
    def raw_dir(self) -> str:
        return osp.join(self.folder, "raw")

    @property
    def processed_dir(self) -> str:
        return processed_location(self.folder, self.dir_name, self.cache_dir, self.use_cache, self.pre_transform)

    @property
    def raw_file_names(self) -> list[str]:
        """Every raw file that processing reads."""
        files = ["num-node-list", "num-edge-list", "edge"]
        if self.meta["has_node_attr"] == "True":
            files.append("node-feat")
        if self.meta["has_edge_attr"] == "True":
            files.append("edge-feat")
        return [f"{f}.csv.gz" for f in files + ["graph-label"]]

    @property
    def processed_file_names(self) -> str:
        return f"graphattn_data_{self.raw_key}.pt"

    def download(self) -> None:  # files are checked in __init__; nothing is ever downloaded
        raise MissingDataError(f"{self.name}: raw files missing under {self.raw_dir}")

    def process(self) -> None:
        """Checks the raw files (``read_ogb_raw``) and builds the
        graphs as ``ogb.io.read_graph_pyg`` does: with ``add_inverse_edge``, each edge is
        followed by its reverse, which repeats its features."""
        raw = read_ogb_raw(self.raw_dir, self.num_tasks, node_feat=self.meta["has_node_attr"] == "True",
                           edge_feat=self.meta["has_edge_attr"] == "True")
        edge, edge_feat, per_edge = raw.edge, raw.edge_feat, 1
        if self.meta["add_inverse_edge"] == "True":
            edge, per_edge = np.repeat(raw.edge, 2, axis=1), 2
            edge[0, 1::2], edge[1, 1::2] = raw.edge[1], raw.edge[0]
            edge_feat = None if edge_feat is None else np.repeat(edge_feat, 2, axis=0)
        edge_index = torch.from_numpy(edge)
        x = None if raw.node_feat is None else torch.from_numpy(raw.node_feat)
        edge_attr = None if edge_feat is None else torch.from_numpy(edge_feat)
        as_float = "classification" not in self.task_type or bool(np.isnan(raw.labels).any())
        labels = torch.from_numpy(raw.labels).to(torch.float32 if as_float else torch.long)
        node_start = np.concatenate([[0], np.cumsum(raw.num_nodes)])
        edge_start = np.concatenate([[0], np.cumsum(raw.num_edges)]) * per_edge
        graphs = []
        for i in track(range(raw.num_graphs), desc=f"processing {self.name}", leave=False):
            nodes, edges = slice(node_start[i], node_start[i + 1]), slice(edge_start[i], edge_start[i + 1])
            graph = Data(num_nodes=int(raw.num_nodes[i]), edge_index=edge_index[:, edges], y=labels[i].view(1, -1))
            if x is not None:
                graph.x = x[nodes]
            if edge_attr is not None:
                graph.edge_attr = edge_attr[edges]
            graphs.append(graph if self.pre_transform is None else self.pre_transform(graph))
        save_processed(graphs, self.processed_paths[0], "graphattn_data*.pt")

    def get_idx_split(self) -> dict[str, Tensor]:
        """The official split: ``{"train", "valid", "test"}`` -> graph indices.

        Raises:
            CorruptDataError: a split file is unreadable, has an index outside the dataset or
                lists a graph twice.
        """
        split = read_ogb_split(osp.join(self.folder, "split", str(self.meta["split"])), len(self))
        return {s: torch.from_numpy(index) for s, index in split.items()}
