"""Planetoid citation graphs (Cora, CiteSeer) with the public split, for transductive node classification.

The folder given as ``root`` holds ``<Name>/raw/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}``,
the release of Yang et al. 2016 (kimiyoung/planetoid) in the layout ``torch_geometric.datasets.Planetoid``
reads. The files are checked (:func:`~graphattn.data.validate.check_planetoid_raw`) and then read with
PyG's ``read_planetoid_data``, which builds the graph as Kipf & Welling's and the GAT authors' loaders do:
test rows put back in node order, CiteSeer's 15 isolated test-range nodes as zero rows outside every
mask, edges made unique without self loops, the public split (the first ``len(y)`` nodes train, the
next 500 validate, the 1,000 nodes of ``test.index`` test). Nothing is written: the raw files are only
read, so a read-only data folder needs no cached copy.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data

from .ogb import MissingDataError
from .validate import PLANETOID_FILES, check_planetoid_raw

__all__ = ["NodeBenchmark", "PLANETOID", "load_planetoid", "row_normalize"]

#: dataset name -> folder name (PyG's ``Planetoid`` names); PubMed is left out: no offline copy was checked
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer"}


@dataclass
class NodeBenchmark:
    """One graph with a node split, for transductive node classification.

    Attributes:
        name: e.g. ``"cora"``.
        data: ``x`` ``[N, F]`` (float32), ``edge_index`` ``[2, E]``, ``y`` ``[N]`` (int64) and boolean
            ``train_mask``, ``val_mask``, ``test_mask`` ``[N]``.
        num_classes: number of classes.
        eval_metric: ``"accuracy"``.
    """

    name: str
    data: Data
    num_classes: int
    eval_metric: str = "accuracy"

    @property
    def num_features(self) -> int:
        return int(self.data.x.size(1))


def row_normalize(x: Tensor) -> Tensor:
    r"""Rows scaled to sum to one, :math:`x_i / \sum_j x_{ij}`; rows summing to zero stay zero (the GAT
    and GCN authors' ``preprocess_features``)."""
    total = x.sum(dim=1, keepdim=True)
    return torch.where(total != 0, x / torch.where(total != 0, total, torch.ones_like(total)), torch.zeros_like(x))


def load_planetoid(name: str, root: str, normalize_features: bool = False) -> NodeBenchmark:
    """``cora`` or ``citeseer`` from ``<root>/<Name>/raw/`` with the public split (Cora 140/500/1000,
    CiteSeer 120/500/1000), features optionally row-normalised (:func:`row_normalize`).

    Raises:
        ValueError: unknown dataset name.
        MissingDataError: a raw file is missing (the message names them and where they go).
        CorruptDataError: a raw file is unreadable or disagrees with the others (one line naming it).
    """
    from torch_geometric.io import read_planetoid_data

    if name not in PLANETOID:
        raise ValueError(f"unknown Planetoid dataset {name!r}; known: {', '.join(PLANETOID)}")
    raw_dir = osp.join(osp.abspath(root), PLANETOID[name], "raw")
    files = [f"ind.{name}.{suffix}" for suffix in PLANETOID_FILES]
    missing = [f for f in files if not osp.isfile(osp.join(raw_dir, f))]
    if missing:
        raise MissingDataError(f"{name}: missing {', '.join(missing)} under {raw_dir}. Place the Planetoid "
                               f"release files (kimiyoung/planetoid data/ind.{name}.*) there.")
    check_planetoid_raw(raw_dir, name)
    data = read_planetoid_data(raw_dir, name)
    if normalize_features:
        data.x = row_normalize(data.x)
    return NodeBenchmark(name=name, data=data, num_classes=int(data.y.max()) + 1)
