"""``load_dataset``: a benchmark's dataset, official split and official evaluator in one call (TU datasets,
which have no official split: GraphTrans's random split, drawn per run)."""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np
from torch import Tensor
from torch_geometric.data import InMemoryDataset

from .lrgb import PEPTIDES, PeptidesDataset
from .ogb import MissingDataError, OGBGraphDataset, ogb_meta
from .planetoid import PLANETOID
from .tu import TU, TUGraphDataset, random_split_indices

__all__ = ["GraphBenchmark", "load_dataset", "dataset_metric", "embedded_root", "MAEEvaluator", "AccuracyEvaluator",
           "EMBEDDED", "MULTICLASS"]

#: the task type of single-label classification over several classes (TU datasets; cross-entropy on logits)
MULTICLASS = "multiclass classification"

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


class AccuracyEvaluator:
    """Accuracy of class logits, with the interface of ``ogb.graphproppred.Evaluator``:
    ``eval({"y_true": [N] or [N, 1] class ids, "y_pred": [N, C] logits}) -> {"accuracy": float}``; the
    predicted class is the first largest logit (GraphTrans's ``pred.max(dim=1)[1]``)."""

    eval_metric = "accuracy"

    def eval(self, input_dict: dict[str, Any]) -> dict[str, float]:
        y_true = np.asarray(input_dict["y_true"]).reshape(-1)
        y_pred = np.asarray(input_dict["y_pred"])
        if y_pred.ndim != 2 or y_pred.shape[0] != y_true.shape[0]:
            raise ValueError(f"y_pred must have shape [{y_true.shape[0]}, classes], got {list(y_pred.shape)}")
        return {"accuracy": float((y_pred.argmax(axis=1) == y_true).mean())}


@dataclass
class GraphBenchmark:
    """A dataset with its official split and evaluator.

    Attributes:
        name: e.g. ``"ogbg-molhiv"``.
        dataset: the PyG dataset (all graphs).
        split: ``{"train", "valid", "test"}`` -> graph indices.
        evaluator: object with ``eval({"y_true", "y_pred"}) -> {metric: value}``.
        eval_metric: key of the metric (``"rocauc"``, ``"ap"``, ``"rmse"``, ``"mae"``).
        task_type: ``"binary classification"``, ``"regression"`` or ``"multiclass classification"``
            (:data:`MULTICLASS`).
        num_tasks: number of prediction targets per graph (multiclass: the number of classes).
        split_for_run: for a dataset without an official split, ``run -> split`` (:meth:`for_run`);
            ``None``: every run uses ``split``.
    """

    name: str
    dataset: InMemoryDataset
    split: dict[str, Tensor]
    evaluator: Any
    eval_metric: str
    task_type: str
    num_tasks: int
    split_for_run: Optional[Callable[[int], dict[str, Tensor]]] = None

    @property
    def higher_is_better(self) -> bool:
        return self.eval_metric not in ("rmse", "mae")

    def subset(self, part: str) -> InMemoryDataset:
        return self.dataset[self.split[part]]

    def for_run(self, run: int) -> "GraphBenchmark":
        """The benchmark that run ``run`` (its seed) trains on: this one, or with the run's own split when the
        dataset has no official one."""
        return self if self.split_for_run is None else dataclasses.replace(self, split=self.split_for_run(run))


def dataset_metric(name: str) -> str:
    """The official metric of a dataset (``"rocauc"``, ``"ap"``, ``"rmse"``, ``"mae"``), without its files."""
    if name in PEPTIDES:
        return PEPTIDES[name][2]
    if name in PLANETOID or name in TU:
        return "accuracy"
    if not name.startswith("ogbg-"):
        raise ValueError(f"unknown dataset {name!r}: use an ogbg-* name or one of "
                         f"{sorted(PEPTIDES) + sorted(PLANETOID) + sorted(TU)}")
    return str(ogb_meta(name)["eval metric"])


def load_dataset(name: str, root: Optional[str] = None, *, cache_dir: Optional[str] = None,
                 pre_transform: Optional[Callable] = None,
                 transform: Optional[Callable] = None) -> GraphBenchmark:
    """Loads ``ogbg-*`` (OGB layout under ``root``), ``peptides-func``/``peptides-struct``
    (LRGB raw files in ``root``) or the TU datasets ``mutag``/``nci1``/``proteins`` (``<root>/<NAME>/raw/``,
    :class:`~graphattn.data.tu.TUGraphDataset`; ``split`` is run 0's, :meth:`GraphBenchmark.for_run` gives
    run ``r``'s, ``random_split_indices``). ``root=None`` uses the copy embedded in the
    package (``ogbg-molesol`` only).

    Raises:
        ValueError: unknown dataset name.
        MissingDataError: the files are not under ``root`` (the message says what goes where).
        CorruptDataError: a raw or split file is unreadable or disagrees with the others (the
            message, one line, names the file and the problem).
    """
    from ogb.graphproppred import Evaluator

    if name in PLANETOID:
        raise ValueError(f"{name} is a node-level dataset (one graph): load it with load_planetoid")
    if name in TU:
        return _load_tu(name, root, pre_transform, transform)
    if name not in PEPTIDES and not name.startswith("ogbg-"):
        raise ValueError(f"unknown dataset {name!r}: use an ogbg-* name (OGB layout) or one of "
                         f"{sorted(PEPTIDES) + sorted(TU)}")
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


def _load_tu(name: str, root: Optional[str], pre_transform: Optional[Callable],
             transform: Optional[Callable]) -> GraphBenchmark:
    if root is None:
        raise MissingDataError(f"{name} does not ship with graphattn; pass root=<folder holding {TU[name]}/raw/>")
    dataset = TUGraphDataset(name, root, transform=transform, pre_transform=pre_transform)
    split_for_run = functools.partial(random_split_indices, len(dataset))
    return GraphBenchmark(name=name, dataset=dataset, split=split_for_run(0), evaluator=AccuracyEvaluator(),
                          eval_metric="accuracy", task_type=MULTICLASS, num_tasks=dataset.num_classes,
                          split_for_run=split_for_run)
