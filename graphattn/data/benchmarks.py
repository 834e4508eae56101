"""``load_dataset``: a benchmark's dataset, official split and official evaluator in one call."""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from torch import Tensor
from torch_geometric.data import InMemoryDataset

from .lrgb import PEPTIDES, PeptidesDataset
from .ogb import MissingDataError, OGBGraphDataset, ogb_meta
from .planetoid import PLANETOID

__all__ = ["GraphBenchmark", "load_dataset", "dataset_metric", "embedded_root", "MAEEvaluator", "EMBEDDED"]

#: datasets shipped inside the package (used when ``root`` is omitted)
EMBEDDED = ("ogbg-molesol",)


def embedded_root() -> str:
    """Folder of the datasets that ship with graphattn."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "datasets")


class MAEEvaluator:
    """Mean absolute error with the interface of ``ogb.graphproppred.Evaluator``
    (``eval({"y_true", "y_pred"}) -> {"mae": float}``), for Peptides-struct."""

    eval_metric = "mae"

    def eval(self, input_dict: dict[str, Any]) -> dict[str, float]:
        y_true = np.asarray(input_dict["y_true"], dtype=np.float64)
        y_pred = np.asarray(input_dict["y_pred"], dtype=np.float64)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must have the same shape")
        labelled = ~np.isnan(y_true)
        return {"mae": float(np.abs(y_true - y_pred)[labelled].mean())}


@dataclass
class GraphBenchmark:
    """A dataset with its official split and evaluator.

    Attributes:
        name: e.g. ``"ogbg-molhiv"``.
        dataset: the PyG dataset (all graphs).
        split: ``{"train", "valid", "test"}`` -> graph indices.
        evaluator: object with ``eval({"y_true", "y_pred"}) -> {metric: value}``.
        eval_metric: key of the metric (``"rocauc"``, ``"ap"``, ``"rmse"``, ``"mae"``).
        task_type: ``"binary classification"`` or ``"regression"``.
        num_tasks: number of prediction targets per graph.
    """

    name: str
    dataset: InMemoryDataset
    split: dict[str, Tensor]
    evaluator: Any
    eval_metric: str
    task_type: str
    num_tasks: int

    @property
    def higher_is_better(self) -> bool:
        return self.eval_metric not in ("rmse", "mae")

    def subset(self, part: str) -> InMemoryDataset:
        return self.dataset[self.split[part]]


def dataset_metric(name: str) -> str:
    """The official metric of a dataset (``"rocauc"``, ``"ap"``, ``"rmse"``, ``"mae"``), without its files."""
    if name in PEPTIDES:
        return PEPTIDES[name][2]
    if name in PLANETOID:
        return "accuracy"
    if not name.startswith("ogbg-"):
        raise ValueError(f"unknown dataset {name!r}: use an ogbg-* name or one of {sorted(PEPTIDES) + sorted(PLANETOID)}")
    return str(ogb_meta(name)["eval metric"])


def load_dataset(name: str, root: Optional[str] = None, *, cache_dir: Optional[str] = None,
                 pre_transform: Optional[Callable] = None,
                 transform: Optional[Callable] = None) -> GraphBenchmark:
    """Loads ``ogbg-*`` (OGB layout under ``root``) or ``peptides-func``/``peptides-struct``
    (LRGB raw files in ``root``). ``root=None`` uses the copy embedded in the package
    (``ogbg-molesol`` only).

    Raises:
        ValueError: unknown dataset name.
        MissingDataError: the files are not under ``root`` (the message says what goes where).
        CorruptDataError: a raw or split file is unreadable or disagrees with the others (the
            message, one line, names the file and the problem).
    """
    from ogb.graphproppred import Evaluator

    if name in PLANETOID:
        raise ValueError(f"{name} is a node-level dataset (one graph): load it with load_planetoid")
    if name not in PEPTIDES and not name.startswith("ogbg-"):
        raise ValueError(f"unknown dataset {name!r}: use an ogbg-* name (OGB layout) or one of "
                         f"{sorted(PEPTIDES)}")
    if name not in PEPTIDES:
        ogb_meta(name)  # raises ValueError for an unknown name before touching the disk
    embedded = root is None
    if embedded:
        if name not in EMBEDDED:
            raise MissingDataError(f"{name} does not ship with graphattn; pass root=<folder with the data> "
                                   f"(embedded: {', '.join(EMBEDDED)})")
        root = embedded_root()
    if name in PEPTIDES:
        dataset = PeptidesDataset(name, root, cache_dir=cache_dir, transform=transform,
                                  pre_transform=pre_transform)
        if dataset.eval_metric == "ap":
            evaluator = Evaluator("ogbg-molpcba")   # OGB's AP, as used by the LRGB reference code
            evaluator.num_tasks = dataset.num_tasks
        else:
            evaluator = MAEEvaluator()
    else:
        dataset = OGBGraphDataset(name, root, cache_dir=cache_dir, transform=transform,
                                  pre_transform=pre_transform, use_cache=embedded)
        evaluator = Evaluator(name)
    return GraphBenchmark(name=name, dataset=dataset, split=dataset.get_idx_split(), evaluator=evaluator,
                          eval_metric=dataset.eval_metric, task_type=dataset.task_type,
                          num_tasks=dataset.num_tasks)
