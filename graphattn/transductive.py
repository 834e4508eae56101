"""Transductive node classification on one graph (Planetoid), full batch, with the GAT authors' early stopping.

Every epoch is one optimiser step on the cross-entropy of the training nodes' logits, then one forward
pass in eval mode (no dropout) that gives the validation loss and accuracy and the test accuracy. The
stopping rule is the one of ``execute_cora.py`` in the GAT authors' code (PetarV-/GAT), see
:class:`GATEarlyStopping`; the result is the test accuracy of the model it saved, restored after the
last epoch.

A seed runs from start to end in one go (Cora: seconds); a run of many seeds is resumed seed by seed
(:mod:`graphattn.train_cli`): a seed killed halfway is run again from its start, which gives the same
numbers because the seed fixes every random draw.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import crash_point
from .config import OptimConfig
from .data.planetoid import NodeBenchmark
from .training import build_optimizer

__all__ = ["GATEarlyStopping", "NodeEpoch", "SeedResult", "fit_transductive", "masked_accuracy"]


class GATEarlyStopping:
    r"""The early stopping of the GAT authors' ``execute_cora.py``, on the validation loss and accuracy.

    With :math:`\ell^*` the lowest validation loss and :math:`a^*` the highest validation accuracy seen
    so far (starting at :math:`+\infty` and 0), an epoch with loss :math:`\ell` and accuracy :math:`a`

    * saves the model when :math:`a \ge a^*` **and** :math:`\ell \le \ell^*`;
    * resets the patience counter when :math:`a \ge a^*` **or** :math:`\ell \le \ell^*` (ties count), and
      then updates :math:`a^* \leftarrow \max(a^*, a)`, :math:`\ell^* \leftarrow \min(\ell^*, \ell)`;
    * otherwise increments the counter, and training stops when it reaches ``patience`` (0: never).

    So the saved model need not hold either best value alone: an epoch that improves only one of them
    resets the counter without saving, and later epochs are compared with both bests.
    """

    def __init__(self, patience: int):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience = patience
        self.best_loss = math.inf
        self.best_acc = 0.0
        self.counter = 0

    def step(self, val_loss: float, val_acc: float) -> tuple[bool, bool]:
        """``(save, stop)`` for an epoch's validation loss and accuracy."""
        if val_acc >= self.best_acc or val_loss <= self.best_loss:
            save = val_acc >= self.best_acc and val_loss <= self.best_loss
            self.best_acc = max(self.best_acc, val_acc)
            self.best_loss = min(self.best_loss, val_loss)
            self.counter = 0
            return save, False
        self.counter += 1
        return False, self.counter == self.patience


@dataclass
class NodeEpoch:
    """One epoch's curve point: training loss (train mode), validation loss and accuracy and test
    accuracy (eval mode, after the epoch's step)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    test_acc: float


@dataclass
class SeedResult:
    """One seed's outcome: the saved model's epoch, its validation loss and accuracy, its test accuracy
    (measured on the restored model), the epochs run and the time taken (training and evaluation): wall-clock
    ``seconds`` and this process's ``cpu_seconds`` (all threads; the wall time a quiet machine would take at
    one thread)."""

    seed: int
    best_epoch: int
    val_acc: float
    val_loss: float
    test_acc: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    cpu_seconds: float
    curve: list[NodeEpoch] = field(default_factory=list, repr=False)


def masked_accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Share of the nodes in ``mask`` whose arg-max logit is their label."""
    return float((logits[mask].argmax(dim=-1) == y[mask]).double().mean())


#: Node features with at most this share of nonzero entries are kept as a sparse CSR matrix.
SPARSE_FEATURES = 0.05


def model_features(x: Tensor) -> Tensor:
    """``x`` as the model reads it: a sparse CSR matrix when at most :data:`SPARSE_FEATURES` of it is nonzero
    (Planetoid's bag-of-words rows: the first projection is then a sparse product, 3-4x less time per epoch on
    Cora, same values), else ``x`` itself."""
    if x.dim() == 2 and x.numel() and float((x != 0).float().mean()) <= SPARSE_FEATURES:
        with warnings.catch_warnings():     # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return x.to_sparse_csr()
    return x


@torch.no_grad()
def _evaluate(model: nn.Module, data, x: Tensor) -> tuple[float, float, float]:
    """``(val_loss, val_acc, test_acc)`` in eval mode."""
    model.eval()
    logits = model(x, data.edge_index)
    val_loss = float(F.cross_entropy(logits[data.val_mask], data.y[data.val_mask]))
    return val_loss, masked_accuracy(logits, data.y, data.val_mask), masked_accuracy(logits, data.y, data.test_mask)


def fit_transductive(model: nn.Module, bench: NodeBenchmark, *, seed: int, max_epochs: int, patience: int,
                     optim: Optional[OptimConfig] = None, device: torch.device | str = "cpu") -> SeedResult:
    """Trains ``model`` (called as ``model(x, edge_index)``, returning logits ``[N, classes]``) on
    ``bench``'s training nodes until :class:`GATEarlyStopping` stops it or ``max_epochs`` pass, then
    restores the saved parameters and measures their test accuracy.

    The caller seeds PyTorch's generator (``torch.manual_seed(seed)``) before building the model, so
    that the initialisation and every dropout mask follow from ``seed``.
    """
    begin, cpu_begin = time.perf_counter(), time.process_time()
    data = bench.data.to(device)
    x = model_features(data.x)
    model.to(device)
    optimizer = build_optimizer(model, optim or OptimConfig(optimizer="adam"))
    stopper = GATEarlyStopping(patience)
    curve: list[NodeEpoch] = []
    saved: Optional[tuple[NodeEpoch, dict[str, Tensor]]] = None
    stop = False
    for epoch in range(1, max_epochs + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits = model(x, data.edge_index)
        loss = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        point = NodeEpoch(epoch, float(loss.detach()), *_evaluate(model, data, x))
        curve.append(point)
        crash_point(f"seed{seed}:epoch{epoch}")
        save, stop = stopper.step(point.val_loss, point.val_acc)
        if save:
            saved = point, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stop:
            break
    if saved is None:
        raise RuntimeError(f"seed {seed}: no epoch was saved (validation loss {curve[-1].val_loss}): "
                           f"the loss is not a number")
    best, state = saved
    model.load_state_dict(state)
    _, _, test_acc = _evaluate(model, data, x)
    return SeedResult(seed=seed, best_epoch=best.epoch, val_acc=best.val_acc, val_loss=best.val_loss,
                      test_acc=test_acc, epochs_run=len(curve), stopped_early=stop,
                      seconds=time.perf_counter() - begin, cpu_seconds=time.process_time() - cpu_begin, curve=curve)
