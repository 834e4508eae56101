"""OGB graph property prediction datasets (``ogbg-mol*``) read from OGB's release layout.

A dataset folder ``<root>/<ogbg_name>/`` holds ``raw/*.csv.gz``, ``split/<split>/*.csv.gz``
and ``RELEASE_v1.txt``, exactly as OGB ships it. :class:`OGBGraphDataset` reads it with
``ogb.io.read_graph_pyg`` and OGB's own ``master.csv`` meta-information, so graphs, labels
and splits are identical to ``ogb.graphproppred.PygGraphPropPredDataset``; unlike that class
it never prompts on stdin, never downloads, saves its processed file with PyG's
``InMemoryDataset.save`` (which loads on torch >= 2.6, where ogb 1.3.6's plain
``torch.load`` fails), and writes the processed file to a cache folder when the data
folder is read-only.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import os.path as osp
import stat
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import InMemoryDataset

__all__ = ["OGBGraphDataset", "ogb_meta", "default_cache_dir", "processed_location", "MissingDataError"]


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


def _split_list(field: str) -> list[str]:
    return [] if field == "None" else field.split(",")


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
        self._check_files()
        super().__init__(self.folder, transform, pre_transform, log=False)
        self.load(self.processed_paths[0])

    def _check_files(self) -> None:
        needed = [osp.join("raw", f) for f in self.raw_file_names + ["graph-label.csv.gz"]]
        needed += [osp.join("split", str(self.meta["split"]), f"{s}.csv.gz") for s in ("train", "valid", "test")]
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
        files = ["edge"]
        if self.meta["has_node_attr"] == "True":
            files.append("node-feat")
        if self.meta["has_edge_attr"] == "True":
            files.append("edge-feat")
        return [f"{f}.csv.gz" for f in files]

    @property
    def processed_file_names(self) -> str:
        return "graphattn_data.pt"

    def download(self) -> None:  # files are checked in __init__; nothing is ever downloaded
        raise MissingDataError(f"{self.name}: raw files missing under {self.raw_dir}")

    def process(self) -> None:
        from ogb.io.read_graph_pyg import read_graph_pyg

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # ogb progress output
            graphs = read_graph_pyg(self.raw_dir, add_inverse_edge=self.meta["add_inverse_edge"] == "True",
                                    additional_node_files=_split_list(self.meta["additional node files"]),
                                    additional_edge_files=_split_list(self.meta["additional edge files"]),
                                    binary=self.meta["binary"] == "True")
        labels = pd.read_csv(osp.join(self.raw_dir, "graph-label.csv.gz"), compression="gzip",
                             header=None).values
        as_float = "classification" not in self.task_type or bool(np.isnan(labels).any())
        for graph, label in zip(graphs, labels):
            y = torch.tensor(np.asarray(label)).view(1, -1)
            graph.y = y.to(torch.float32) if as_float else y.to(torch.long)
        if self.pre_transform is not None:
            graphs = [self.pre_transform(g) for g in graphs]
        self.save(graphs, self.processed_paths[0])

    def get_idx_split(self) -> dict[str, Tensor]:
        """The official split: ``{"train", "valid", "test"}`` -> graph indices."""
        path = osp.join(self.folder, "split", str(self.meta["split"]))
        return {s: torch.from_numpy(pd.read_csv(osp.join(path, f"{s}.csv.gz"), compression="gzip",
                                                header=None).values[:, 0].astype(np.int64))
                for s in ("train", "valid", "test")}
