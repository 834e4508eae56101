"""LRGB Peptides-func / Peptides-struct from the raw LRGB release files.

The folder given as ``root`` holds what the LRGB release ships:

* ``raw/peptide_multi_class_dataset.csv.gz`` (Peptides-func: 10 binary labels) or
  ``raw/peptide_structure_dataset.csv.gz`` (Peptides-struct: 11 regression targets);
* ``splits_random_stratified_peptide.pickle`` (``train``/``val``/``test`` index arrays;
  the same split serves both datasets).

Processing follows the LRGB reference loader: every SMILES goes through
``ogb.utils.smiles2graph`` (9 atom and 3 bond categorical features, OGB's encoding), so the
graphs are the ones published models were trained on. The CSV and the split pickle are checked
first (:mod:`graphattn.data.validate`); the processed file is saved atomically under a name
keyed by the CSV's content, as for OGB datasets.
"""
from __future__ import annotations

import os.path as osp
from typing import Callable, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from ..progress import track
from .ogb import MissingDataError, default_cache_dir, processed_location, raw_fingerprint, save_processed
from .validate import CorruptDataError, read_peptides, read_peptides_split

__all__ = ["PeptidesDataset", "PEPTIDES"]

SPLIT_FILE = "splits_random_stratified_peptide.pickle"

#: name -> (raw csv, label column handling, task type, metric)
PEPTIDES = {
    "peptides-func": ("peptide_multi_class_dataset.csv.gz", "binary classification", "ap"),
    "peptides-struct": ("peptide_structure_dataset.csv.gz", "regression", "mae"),
}
#: Peptides-func's number of binary labels
_FUNC_LABELS = 10
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

    Raises:
        MissingDataError: the CSV or the split pickle is missing.
        CorruptDataError: the CSV is unreadable, lacks a column, has a malformed label or an
            unparsable SMILES (checked when processing).
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
        self.raw_key = raw_fingerprint(self.raw_paths)
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
        return f"{self.name.replace('-', '_')}_{self.raw_key}.pt"

    def download(self) -> None:
        raise MissingDataError(f"{self.name}: raw/{self.csv_name} missing under {self.folder}")

    def process(self) -> None:
        from ogb.utils import smiles2graph

        path = self.raw_paths[0]
        targets = None if self.name == "peptides-func" else _STRUCT_TARGETS
        smiles, labels = read_peptides(path, targets, _FUNC_LABELS)
        graphs = []
        for i in track(range(len(smiles)), desc=f"processing {self.name}", leave=False):
            try:
                g = smiles2graph(smiles[i])
            except AttributeError:  # RDKit returned no molecule
                raise CorruptDataError(path, f"line {i + 2}: SMILES {smiles[i][:60]!r} does not parse") from None
            data = Data(x=torch.from_numpy(g["node_feat"]).long(),
                        edge_index=torch.from_numpy(g["edge_index"]).long(),
                        edge_attr=torch.from_numpy(g["edge_feat"]).long(),
                        y=torch.from_numpy(labels[i]).view(1, -1), num_nodes=int(g["num_nodes"]))
            graphs.append(data if self.pre_transform is None else self.pre_transform(data))
        save_processed(graphs, self.processed_paths[0], f"{self.name.replace('-', '_')}*.pt")

    def get_idx_split(self) -> dict[str, Tensor]:
        """The official split, ``{"train", "valid", "test"}`` -> indices (LRGB's ``val`` is ``valid``).

        Raises:
            CorruptDataError: the pickle is unreadable, lacks a part, has an index outside the
                dataset or lists a peptide twice.
        """
        split = read_peptides_split(osp.join(self.folder, SPLIT_FILE), len(self))
        return {s: torch.from_numpy(index) for s, index in split.items()}
