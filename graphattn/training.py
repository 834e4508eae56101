"""Training and evaluation loops for graph-level prediction with official evaluators.

A model maps a PyG ``Batch`` to predictions ``[num_graphs, num_tasks]`` (logits for
classification). Labels may be missing (NaN, as in ogbg-molpcba): the loss and the
evaluator only see labelled entries, as OGB prescribes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from .data.benchmarks import GraphBenchmark

__all__ = ["masked_loss", "train_epoch", "predict", "evaluate", "EpochRecord", "fit"]


def masked_loss(pred: Tensor, target: Tensor, task_type: str) -> Tensor:
    """BCE-with-logits (classification) or MSE (regression) over labelled entries only."""
    target = target.view(pred.shape).to(pred.dtype)
    labelled = ~torch.isnan(target)
    if "classification" in task_type:
        return F.binary_cross_entropy_with_logits(pred[labelled], target[labelled])
    return F.mse_loss(pred[labelled], target[labelled])


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, task_type: str,
                device: torch.device, progress: bool = False, desc: str = "train",
                step_hook: Optional[Callable[[], None]] = None) -> float:
    """One pass over ``loader``; returns the mean training loss per graph."""
    model.train()
    total, count = 0.0, 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = masked_loss(model(batch), batch.y, task_type)
        loss.backward()
        optimizer.step()
        if step_hook is not None:
            step_hook()
        total += float(loss.detach()) * batch.num_graphs
        count += batch.num_graphs
    return total / max(count, 1)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(y_true, y_pred)`` over ``loader`` on the CPU."""
    model.eval()
    trues, preds = [], []
    for batch in loader:
        batch = batch.to(device)
        pred = model(batch)
        trues.append(batch.y.view(pred.shape).float().cpu())
        preds.append(pred.float().cpu())
    return torch.cat(trues), torch.cat(preds)


def evaluate(model: nn.Module, loader: DataLoader, benchmark: GraphBenchmark,
             device: torch.device) -> float:
    """The official metric (``benchmark.evaluator``) of ``model`` on ``loader``."""
    y_true, y_pred = predict(model, loader, device)
    return float(benchmark.evaluator.eval({"y_true": y_true.numpy(), "y_pred": y_pred.numpy()})[
        benchmark.eval_metric])


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    valid: float
    test: float
    seconds: float


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    best: Optional[EpochRecord] = None


def fit(model: nn.Module, benchmark: GraphBenchmark, *, epochs: int, batch_size: int = 128, lr: float = 1e-3,
        weight_decay: float = 0.0, device: torch.device | str = "cpu", progress: bool = True,
        log: Callable[[str], None] = print, seed: int = 0) -> FitResult:
    """Trains with Adam, evaluates valid/test every epoch, keeps the best-valid epoch."""
    device = torch.device(device)
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(benchmark.subset("train"), batch_size=batch_size, shuffle=True, generator=generator)
    valid = DataLoader(benchmark.subset("valid"), batch_size=batch_size)
    test = DataLoader(benchmark.subset("test"), batch_size=batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sign = 1.0 if benchmark.higher_is_better else -1.0
    result = FitResult()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(model, train, optimizer, benchmark.task_type, device, progress,
                           desc=f"epoch {epoch}/{epochs}")
        seconds = time.perf_counter() - start
        record = EpochRecord(epoch, loss, evaluate(model, valid, benchmark, device),
                             evaluate(model, test, benchmark, device), seconds)
        result.history.append(record)
        if result.best is None or sign * record.valid > sign * result.best.valid or math.isnan(result.best.valid):
            result.best = record
        m = benchmark.eval_metric
        log(f"epoch {epoch:3d}  train loss {loss:.4f}  valid {m} {record.valid:.4f}  "
            f"test {m} {record.test:.4f}  ({seconds:.1f} s)")
    return result
