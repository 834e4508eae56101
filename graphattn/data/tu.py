"""TU graph-classification datasets (MUTAG, NCI1, PROTEINS) from their raw text files, with per-run random splits.

The folder given as ``root`` holds ``<NAME>/raw/<NAME>_{A,graph_indicator,graph_labels,node_labels}.txt``, the
release of Morris et al. (TUDataset) in the layout ``torch_geometric.datasets.TUDataset(root, name)`` reads.
The files are checked (:func:`~graphattn.data.validate.check_tu_raw`) and then read with PyG's
``read_tu_data``, so the graphs are ``TUDataset``'s (self-loops removed, edges coalesced) with its defaults
``use_node_attr=False``, ``use_edge_attr=False``: node features are the one-hot node labels (NCI1: 37 atom
labels; PROTEINS' continuous attribute is left out) and, unlike ``TUDataset``, no edge features at all (MUTAG's
edge labels are dropped): the GraphTrans models take none. Nothing is written: the raw files are only read,
so a read-only data folder needs no cached copy.

TU datasets have no official split. :func:`random_split_indices` draws run ``r``'s 80/10/10 split as
GraphTrans (Wu et al. 2021, ``dataset/tud.py``) does, from a generator of its own (see there).
"""
from __future__ import annotations

import os.path as osp
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import random_split
from torch_geometric.data import InMemoryDataset

from .ogb import MissingDataError
from .validate import TU_FILES, check_tu_raw

__all__ = ["TU", "TUGraphDataset", "random_split_indices", "SPLIT_SEED", "SPLIT_FRACTIONS"]

#: dataset name -> folder and file prefix (TUDataset's names)
TU = {"mutag": "MUTAG", "nci1": "NCI1", "proteins": "PROTEINS"}
#: GraphTrans's seed for its NCI1 runs (ucbrise/graphtrans ``configs/NCI1/gnn-transformer/...``: ``seed: 12344``)
SPLIT_SEED = 12344
#: train and validation fractions of GraphTrans's split (``int(0.8 n)``, ``int(0.1 n)``; the rest is test)
SPLIT_FRACTIONS = (0.8, 0.1)


class TUGraphDataset(InMemoryDataset):
    r"""A TU graph-classification dataset read from its raw files.

    Graphs have ``x`` ``[n, L]`` (float32 one-hot of the node label, :math:`L` labels), ``edge_index``
    ``[2, E]`` (both directions of every bond, no self-loops) and ``y`` ``[1]`` (int64 class ``0..C-1``).

    Args:
        name: ``"mutag"``, ``"nci1"`` or ``"proteins"``.
        root: folder with ``<NAME>/raw/`` (see the module docstring).
        transform: applied to every graph on access; pre_transform: applied once to every graph when loading.

    Raises:
        ValueError: unknown dataset name.
        MissingDataError: a raw file is missing (the message names them and where they go).
        CorruptDataError: a raw file is unreadable or disagrees with the others (one line naming it).
    """

    def __init__(self, name: str, root: str, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None):
        from torch_geometric.io import read_tu_data

        if name not in TU:
            raise ValueError(f"unknown TU dataset {name!r}; known: {', '.join(TU)}")
        prefix = TU[name]
        raw_dir = osp.join(osp.abspath(root), prefix, "raw")
        missing = [f"{prefix}_{suffix}.txt" for suffix in TU_FILES
                   if not osp.isfile(osp.join(raw_dir, f"{prefix}_{suffix}.txt"))]
        if missing:
            raise MissingDataError(f"{name}: missing {', '.join(missing)} under {raw_dir}. Place the TU release files "
                                   f"({prefix}.zip of TUDataset) there.")
        check_tu_raw(raw_dir, prefix)
        super().__init__(None, transform, log=False)
        self.name = name
        data, slices, sizes = read_tu_data(raw_dir, prefix)
        data.x = data.x[:, sizes["num_node_attributes"]:]          # TUDataset(use_node_attr=False)
        if "edge_attr" in data:
            del data.edge_attr
            del slices["edge_attr"]
        self.data, self.slices = data, slices
        if pre_transform is not None:
            self.data, self.slices = self.collate([pre_transform(self.get(i)) for i in range(len(self))])


def random_split_indices(num_graphs: int, run: int, seed: int = SPLIT_SEED) -> dict[str, Tensor]:
    r"""Run ``run``'s split ``{"train", "valid", "test"}`` -> graph indices: ``torch.utils.data.random_split`` into
    ``int(0.8 n)``, ``int(0.1 n)`` and the remaining graphs, as GraphTrans's ``dataset/tud.py`` draws it, with a
    generator seeded ``seed + run``.

    GraphTrans seeds PyTorch's global generator once (12344) and draws a fresh split at the start of every run
    from it, so its run :math:`r`'s split depends on every random number runs :math:`0..r-1` drew (initialisation,
    shuffling, dropout on the CPU) and cannot be recreated apart from the whole sequence. Here each run's split
    has its own generator: the same distribution (a uniformly random partition of these sizes), deterministic
    for every run, whatever else ran before it.

    Raises:
        ValueError: ``num_graphs`` < 1 or ``run`` < 0.
    """
    if num_graphs < 1 or run < 0:
        raise ValueError(f"need num_graphs >= 1 and run >= 0, got num_graphs={num_graphs}, run={run}")
    num_train, num_valid = (int(num_graphs * f) for f in SPLIT_FRACTIONS)
    sizes = [num_train, num_valid, num_graphs - num_train - num_valid]
    parts = random_split(range(num_graphs), sizes, generator=torch.Generator().manual_seed(seed + run))
    return {name: torch.tensor(part.indices, dtype=torch.long) for name, part in zip(("train", "valid", "test"), parts)}
