"""Training and evaluation loops for graph-level prediction with official evaluators.

A model is called as ``model(**model_inputs(batch))`` (see :func:`graphattn.models.model_inputs`)
and returns predictions ``[num_graphs, num_tasks]`` (logits for classification). Labels may
be missing (NaN, as in ogbg-molpcba): the loss and the evaluator only see labelled entries,
as OGB prescribes. :func:`fit` selects the epoch with the best validation metric, writes
per-epoch logs and checkpoints, resumes from its last checkpoint, and runs data-parallel
under ``torchrun`` (see :mod:`graphattn.distributed`).

Resuming is exact: the checkpoint of an epoch holds the model, the optimiser, the schedule, every
random number generator and the data loader's shuffling state (:mod:`graphattn.checkpoint`), so a run
killed at any moment and resumed reproduces the uninterrupted run bit for bit. Every file is written
atomically, the checkpoint first; the logs (``metrics.csv``, ``history.json``) are rewritten from the
checkpoint's history, so a kill between two writes never duplicates or loses an epoch. With a
:class:`~graphattn.interrupt.CheckpointSchedule`, ``last.pt`` is also written inside an epoch (every few
minutes, and on ``SIGTERM`` before stopping): it then holds the epoch's :class:`EpochPosition` as well, and
the resumed run replays the epoch's shuffled order from its start, skips the batches already trained on and
goes on bit for bit.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os.path as osp
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Collection, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torch_geometric.loader import DataLoader

from .checkpoint import (atomic_save, atomic_write_text, check_dropout_generator, crash_point, load_checkpoint,
                         rng_state, set_rng_state)
from .config import OptimConfig
from .data.benchmarks import MULTICLASS, GraphBenchmark
from .distributed import DistContext, gather_objects, shard_indices
from .interrupt import CheckpointSchedule
from .models.inputs import model_inputs
from .progress import track
from .sparsify import GTSP

__all__ = ["masked_loss", "train_epoch", "predict", "evaluate", "EpochPosition", "EpochRecord", "FitResult", "fit",
           "build_optimizer", "build_scheduler"]

SINGLE = DistContext(0, 1, torch.device("cpu"))


def masked_loss(pred: Tensor, target: Tensor, task_type: str) -> Tensor:
    """Cross-entropy of class logits ``[B, C]`` against class ids ``[B]`` (multiclass classification), or
    BCE-with-logits (classification) or MSE (regression) over labelled entries only."""
    if task_type == MULTICLASS:
        return F.cross_entropy(pred, target.view(-1).long())
    target = target.view(pred.shape).to(pred.dtype)
    labelled = ~torch.isnan(target)
    if "classification" in task_type:
        return F.binary_cross_entropy_with_logits(pred[labelled], target[labelled])
    return F.mse_loss(pred[labelled], target[labelled])


@dataclass
class EpochPosition:
    """How far an epoch's training pass got: the optimiser steps taken, the sum of loss x graphs over them
    and the graphs seen (the running mean of :func:`train_epoch`), the seconds spent, and the learning rate at
    the epoch's start (what its record logs; ``None``: not yet known)."""

    steps: int = 0
    loss_sum: float = 0.0
    graphs: int = 0
    seconds: float = 0.0
    lr: Optional[float] = None


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, task_type: str,
                device: torch.device, progress: bool = False, desc: str = "train", grad_clip: float = 0.0,
                step_hook: Optional[Callable[[], None]] = None, position: Optional[EpochPosition] = None) -> float:
    """One pass over ``loader``; returns the mean training loss per graph (this rank's share).

    ``position``, updated after every step (before ``step_hook``), continues an epoch: its first
    ``position.steps`` batches are drawn from ``loader`` and skipped, and the loss sums go on from it.
    """
    model.train()
    position = position if position is not None else EpochPosition()
    batches = itertools.islice(loader, position.steps, None)
    for batch in track(batches, desc=desc, total=len(loader) - position.steps, leave=False, disable=not progress):
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = masked_loss(model(**model_inputs(batch)), batch.y, task_type)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        position.steps += 1
        position.loss_sum += float(loss.detach()) * batch.num_graphs
        position.graphs += batch.num_graphs
        if step_hook is not None:
            step_hook()
    return position.loss_sum / max(position.graphs, 1)


@torch.no_grad()
def predict(model: nn.Module, dataset, device: torch.device, batch_size: int,
            ctx: DistContext = SINGLE) -> tuple[Tensor, Tensor]:
    """``(y_true, y_pred)`` on the CPU for every graph of ``dataset``, in dataset order (``y_true`` ``[G, T]``:
    the targets, or ``[G, 1]`` class ids against ``[G, C]`` logits).

    Under data parallelism each rank predicts its shard and the shards are gathered, so every
    rank returns the same tensors.
    """
    model.eval()
    index = shard_indices(len(dataset), ctx)
    trues, preds = [], []
    for batch in DataLoader(dataset[index], batch_size=batch_size):
        batch = batch.to(device)
        pred = model(**model_inputs(batch))
        trues.append(batch.y.view(pred.size(0), -1).float().cpu())
        preds.append(pred.float().cpu())
    shards = gather_objects((index, torch.cat(trues) if trues else None, torch.cat(preds) if preds else None), ctx)
    order = torch.cat([i for i, _, _ in shards]).argsort()
    return (torch.cat([t for _, t, _ in shards if t is not None])[order],
            torch.cat([p for _, _, p in shards if p is not None])[order])


def evaluate(model: nn.Module, dataset, benchmark: GraphBenchmark, device: torch.device, batch_size: int = 256,
             ctx: DistContext = SINGLE) -> float:
    """The official metric (``benchmark.evaluator``) of ``model`` on ``dataset``."""
    y_true, y_pred = predict(model, dataset, device, batch_size, ctx)
    return float(benchmark.evaluator.eval({"y_true": y_true.numpy(), "y_pred": y_pred.numpy()})[
        benchmark.eval_metric])


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters; the fused implementation (one kernel for all
    parameters, the same update rule) when they are floating-point tensors on the CPU or a CUDA device:
    on OGB's GIN + VN it makes a CPU training step 11% faster than the per-parameter loop."""
    cls = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, epochs: int, steps_per_epoch: int = 1):
    """Per-epoch schedule: linear warm-up then cosine decay (GraphGPS's ``cosine_with_warmup``),
    reduce-on-plateau of the validation metric, or constant. With ``optim.schedule_step == "iteration"`` the
    cosine schedule counts optimiser steps, ``steps_per_epoch`` per epoch, and is stepped after every one
    (with no warm-up and ``min_lr`` 0: GraphTrans's ``CosineAnnealingLR(T_max=epochs * len(loader))``)."""
    if optim.scheduler == "cosine":
        unit = steps_per_epoch if optim.schedule_step == "iteration" else 1
        warmup, total = optim.warmup_epochs * unit, epochs * unit

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return max(optim.min_lr / optim.lr, 0.5 * (1 + math.cos(math.pi * progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if optim.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=optim.plateau_factor,
                                                          patience=optim.plateau_patience, min_lr=optim.min_lr)
    return None


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    valid: float
    test: float
    seconds: float
    lr: float


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    best: Optional[EpochRecord] = None

    @property
    def mean_epoch_seconds(self) -> float:
        return sum(r.seconds for r in self.history) / max(1, len(self.history))

    @classmethod
    def from_checkpoint(cls, state: dict) -> "FitResult":
        """The history and best epoch saved in a ``last.pt`` (:func:`graphattn.checkpoint.load_checkpoint`)."""
        best = EpochRecord(**state["best"]) if state["best"] else None
        return cls([EpochRecord(**r) for r in state["history"]], best)


def _better(record: EpochRecord, best: Optional[EpochRecord], higher_is_better: bool) -> bool:
    if best is None or math.isnan(best.valid):
        return True
    return record.valid > best.valid if higher_is_better else record.valid < best.valid


def fit(model: nn.Module, benchmark: GraphBenchmark, *, epochs: int, batch_size: int = 128,
        optim: Optional[OptimConfig] = None, ctx: DistContext = SINGLE, out_dir: Optional[str] = None,
        resume: bool = False, progress: bool = True, log: Callable[[str], None] = print, seed: int = 0,
        num_workers: int = 0, compile_model: bool = False, schedule: Optional[CheckpointSchedule] = None,
        select_epochs: Optional[Collection[int]] = None) -> FitResult:
    """Trains ``model`` on ``benchmark``'s train split, evaluating valid and test every epoch. A
    :class:`~graphattn.sparsify.GTSP` model gets its hooks: :meth:`~graphattn.sparsify.GTSP.step` after every
    optimiser step, :meth:`~graphattn.sparsify.GTSP.epoch_end` after every training epoch.

    Args:
        optim: optimiser and schedule (default: Adam, lr 1e-3, constant).
        ctx: the data-parallel context (:func:`graphattn.distributed.init_distributed`).
        out_dir: where ``metrics.csv``, ``last.pt`` (resumable state) and ``best.pt`` go (rank 0).
        resume: continue from ``out_dir/last.pt`` when it exists.
        schedule: when to write ``last.pt`` inside an epoch as well (single process with ``out_dir`` only);
            after ``SIGTERM`` it raises :class:`~graphattn.interrupt.TrainingStopped` once the checkpoint is written.
        select_epochs: the epochs that may be the best-validation epoch (``None``: all; the first of equal
            validation metrics wins). Every epoch is still evaluated and logged.

    Returns:
        The per-epoch history and the best-validation epoch (whose test metric is the result).
    """
    if schedule is not None and (ctx.enabled or not out_dir):
        raise ValueError("fit: schedule (mid-epoch checkpoints) needs out_dir and a single process")
    optim = optim or OptimConfig()
    device = ctx.device
    model.to(device)
    optimizer = build_optimizer(model, optim)
    train_set = benchmark.subset("train")
    sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=seed) if ctx.enabled else None
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=generator if sampler is None else None, num_workers=num_workers)
    scheduler = build_scheduler(optimizer, optim, epochs, len(loader))
    per_step = scheduler is not None and optim.schedule_step == "iteration"
    result, start_epoch, position = FitResult(), 1, None
    last_path = osp.join(out_dir, "last.pt") if out_dir else None
    if resume and last_path and osp.exists(last_path):
        state = load_checkpoint(last_path, device)
        check_dropout_generator(state, last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], generator)
        result = FitResult.from_checkpoint(state)
        start_epoch = state["epoch"] + 1
        if state.get("position"):                # a mid-epoch checkpoint: replay the epoch's order from its start
            position = EpochPosition(**state["position"]["done"])
            generator.set_state(state["position"]["loader_at_start"].cpu())
        if ctx.is_main:
            _write_logs(out_dir, result)         # drop whatever a kill left after the checkpoint
        log(f"resumed from {last_path} after epoch {state['epoch']}"
            + (f" and {position.steps} steps of epoch {start_epoch}" if position else ""))
    # find_unused_parameters: in GraphGPS's models the last GatedGCN layer's edge update (its edge BatchNorm)
    # feeds nothing, so those parameters never get a gradient; DDP must be told, at the cost of one pass over
    # the autograd graph per step
    train_model = DistributedDataParallel(model, find_unused_parameters=True) if ctx.enabled else model
    if compile_model:
        train_model = torch.compile(train_model, dynamic=True)
    valid_set, test_set = benchmark.subset("valid"), benchmark.subset("test")
    metric = benchmark.eval_metric
    gtsp = model if isinstance(model, GTSP) else None
    for epoch in range(start_epoch, epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        position = position or EpochPosition()
        if position.lr is None:          # a per-step schedule has moved on when an epoch resumes mid-way
            position.lr = optimizer.param_groups[0]["lr"]
        lr = position.lr
        begin, seconds_before, loader_at_start = time.perf_counter(), position.seconds, generator.get_state()

        def after_step(epoch=epoch, position=position, begin=begin, seconds_before=seconds_before,
                       loader_at_start=loader_at_start) -> None:
            if per_step:                 # first, so that a mid-epoch checkpoint holds this step's schedule
                scheduler.step()
            if gtsp is not None:         # GTSP's pruners after every optimiser step (their state is checkpointed)
                gtsp.step()
            crash_point(f"step:{epoch}:{position.steps}")
            if schedule is not None and schedule.due():
                done = replace(position, seconds=seconds_before + time.perf_counter() - begin)
                _write_position(out_dir, _training_state(model, optimizer, scheduler, epoch - 1, generator, result),
                                done, loader_at_start)
                crash_point(f"after_step_checkpoint:{epoch}:{position.steps}")
                schedule.written()

        loss = train_epoch(train_model, loader, optimizer, benchmark.task_type, device,
                           progress and ctx.is_main, f"epoch {epoch}/{epochs}", optim.grad_clip,
                           step_hook=after_step, position=position)
        seconds = seconds_before + time.perf_counter() - begin
        position = None
        if gtsp is not None:
            gtsp.epoch_end()
        loss = sum(gather_objects(loss, ctx)) / ctx.world_size
        record = EpochRecord(epoch, loss, evaluate(model, valid_set, benchmark, device, 256, ctx),
                             evaluate(model, test_set, benchmark, device, 256, ctx), seconds, lr)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(record.valid if benchmark.higher_is_better else -record.valid)
        elif scheduler is not None and not per_step:
            scheduler.step()
        result.history.append(record)
        improved = ((select_epochs is None or epoch in select_epochs)
                    and _better(record, result.best, benchmark.higher_is_better))
        if improved:
            result.best = record
        log(f"epoch {epoch:3d}  loss {loss:.4f}  valid {metric} {record.valid:.4f}  "
            f"test {metric} {record.test:.4f}  lr {lr:.2e}  {seconds:.1f} s{'  *' if improved else ''}")
        if out_dir and ctx.is_main:
            _write_epoch(out_dir, record, improved, model, optimizer, scheduler, result, generator)
            if schedule is not None:
                schedule.written()
    return result


def _write_epoch(out_dir: str, record: EpochRecord, improved: bool, model: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler, result: FitResult,
                 generator: torch.Generator) -> None:
    """The epoch's files, each atomic: ``best.pt`` (if improved), then ``last.pt`` (the resumable state:
    after it the epoch counts as done), then the logs rewritten from the history."""
    crash_point(f"before_checkpoint:{record.epoch}")
    if improved:
        atomic_save(model.state_dict(), osp.join(out_dir, "best.pt"))
    atomic_save(_training_state(model, optimizer, scheduler, record.epoch, generator, result),
                osp.join(out_dir, "last.pt"))
    crash_point(f"after_checkpoint:{record.epoch}")
    _write_logs(out_dir, result)


def _training_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, epoch: int,
                    generator: torch.Generator, result: FitResult) -> dict:
    """What ``last.pt`` holds after ``epoch`` whole epochs."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "epoch": epoch,
            "rng": rng_state(generator), "history": [asdict(r) for r in result.history],
            "best": asdict(result.best) if result.best else None}


def _write_position(out_dir: str, state: dict, done: EpochPosition, loader_at_start: Tensor) -> None:
    """A mid-epoch ``last.pt``: ``state`` after the last whole epoch plus how far the next one got and the
    loader generator's state at its start (from which the resumed run draws the epoch's order again)."""
    state["position"] = {"done": asdict(done), "loader_at_start": loader_at_start}
    atomic_save(state, osp.join(out_dir, "last.pt"))


def _write_logs(out_dir: str, result: FitResult) -> None:
    """``metrics.csv`` and ``history.json`` from the whole history (atomically)."""
    rows = [asdict(r) for r in result.history]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[f.name for f in EpochRecord.__dataclass_fields__.values()],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(osp.join(out_dir, "metrics.csv"), text.getvalue())
    crash_point("between_logs")
    atomic_write_text(osp.join(out_dir, "history.json"), json.dumps(rows, indent=1))
