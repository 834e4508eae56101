"""LRGB Peptides-func / Peptides-struct from the raw LRGB release files.

The folder given as ``root`` holds what the LRGB release ships:

* ``raw/peptide_multi_class_dataset.csv.gz`` (Peptides-func: 10 binary labels) or
  ``raw/peptide_structure_dataset.csv.gz`` (Peptides-struct: 11 regression targets);
* ``splits_random_stratified_peptide.pickle`` (``train``/``val``/``test`` index arrays;
  the same split serves both datasets).

Processing follows the LRGB reference loader: every SMILES goes through
``ogb.utils.smiles2graph`` (9 atom and 3 bond categorical features, OGB's encoding), so the
graphs are the ones published models were trained on.
"""
from __future__ import annotations

import ast
import os.path as osp
import pickle
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from .ogb import MissingDataError, default_cache_dir, processed_location

__all__ = ["PeptidesDataset", "PEPTIDES"]

SPLIT_FILE = "splits_random_stratified_peptide.pickle"

#: name -> (raw csv, label column handling, task type, metric)
PEPTIDES = {
    "peptides-func": ("peptide_multi_class_dataset.csv.gz", "binary classification", "ap"),
    "peptides-struct": ("peptide_structure_dataset.csv.gz", "regression", "mae"),
}
_STRUCT_TARGETS = ["Inertia_mass_a", "Inertia_mass_b", "Inertia_mass_c", "Inertia_valence_a",
                   "Inertia_valence_b", "Inertia_valence_c", "length_a", "length_b", "length_c",
                   "Spherocity", "Plane_best_fit"]


class PeptidesDataset(InMemoryDataset):
    r"""LRGB Peptides-func or Peptides-struct (15,535 peptides).

    Graphs have ``x`` ``[N, 9]`` and ``edge_attr`` ``[E, 3]`` (int64, OGB encoding) and ``y``
    ``[1, 10]`` (func, float 0/1) or ``[1, 11]`` (struct, float).

    Args:
        name: ``"peptides-func"`` or ``"peptides-struct"``.
        root: folder with ``raw/<csv>`` and the split pickle (see the module docstring).
        cache_dir: where the processed file goes when ``root`` is read-only.
    """

    def __init__(self, name: str, root: str, cache_dir: Optional[str] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None):
        if name not in PEPTIDES:
            raise ValueError(f"unknown LRGB dataset {name!r}; known: {sorted(PEPTIDES)}")
        self.name = name
        self.csv_name, self.task_type, self.eval_metric = PEPTIDES[name]
        self.folder = osp.abspath(root)
        self.cache_dir = cache_dir or default_cache_dir()
        missing = [f for f in (osp.join("raw", self.csv_name), SPLIT_FILE)
                   if not osp.exists(osp.join(self.folder, f))]
        if missing:
            raise MissingDataError(f"{name}: missing {', '.join(missing)} under {self.folder}. Place the "
                                   f"LRGB release files raw/{self.csv_name} and {SPLIT_FILE} there.")
        super().__init__(self.folder, transform, pre_transform, log=False)
        self.load(self.processed_paths[0])
        self.num_tasks = int(self._data.y.size(-1))

    @property
    def raw_dir(self) -> str:
        return osp.join(self.folder, "raw")

    @property
    def processed_dir(self) -> str:
        return processed_location(self.folder, self.name, self.cache_dir, pre_transform=self.pre_transform)

    @property
    def raw_file_names(self) -> list[str]:
        return [self.csv_name]

    @property
    def processed_file_names(self) -> str:
        return f"{self.name.replace('-', '_')}.pt"

    def download(self) -> None:
        raise MissingDataError(f"{self.name}: raw/{self.csv_name} missing under {self.folder}")

    def process(self) -> None:
        from ogb.utils import smiles2graph
        from tqdm import tqdm

        frame = pd.read_csv(osp.join(self.raw_dir, self.csv_name))
        if self.name == "peptides-func":
            labels = [ast.literal_eval(s) for s in frame["labels"]]
        else:
            labels = frame[_STRUCT_TARGETS].values.tolist()
        graphs = []
        for smiles, label in tqdm(zip(frame["smiles"], labels), total=len(frame),
                                  desc=f"processing {self.name}", leave=False):
            g = smiles2graph(smiles)
            data = Data(x=torch.from_numpy(g["node_feat"]).long(),
                        edge_index=torch.from_numpy(g["edge_index"]).long(),
                        edge_attr=torch.from_numpy(g["edge_feat"]).long(),
                        y=torch.tensor([label], dtype=torch.float32), num_nodes=int(g["num_nodes"]))
            graphs.append(data if self.pre_transform is None else self.pre_transform(data))
        self.save(graphs, self.processed_paths[0])

    def get_idx_split(self) -> dict[str, Tensor]:
        """The official split, ``{"train", "valid", "test"}`` -> indices (LRGB's ``val`` is ``valid``)."""
        with open(osp.join(self.folder, SPLIT_FILE), "rb") as f:
            split = pickle.load(f)
        return {"train": torch.as_tensor(np.asarray(split["train"]), dtype=torch.long),
                "valid": torch.as_tensor(np.asarray(split["val"]), dtype=torch.long),
                "test": torch.as_tensor(np.asarray(split["test"]), dtype=torch.long)}
