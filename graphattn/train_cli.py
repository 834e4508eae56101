"""``graphattn train``: a ready-made model on an OGB / LRGB benchmark with its official split and evaluator.

Examples::

    graphattn train --dataset ogbg-molesol --epochs 2
    graphattn train --config gps-molhiv --root data/ogb --device cuda --seeds 0 1 2 --out runs/molhiv
    torchrun --nproc_per_node=4 -m graphattn.cli train --config mpnn-vn-peptides-func --root data/peptides

Writes, per seed, ``<out>/seed<k>/{metrics.csv, history.json, last.pt, best.pt}`` and
``<out>/summary.json``; resumes from ``last.pt`` with ``--resume``. Errors in the command line,
the config or the data are reported on one line with a non-zero exit status.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os.path as osp
import statistics
import sys
import time
from typing import Any, Optional

import torch
from torch import nn
from torch_geometric.transforms import Compose

from .checkpoint import CheckpointError, atomic_write_text
from .config import MODELS, ConfigError, TrainConfig, load_config
from .data import MissingDataError, load_dataset
from .data.benchmarks import GraphBenchmark
from .distributed import DistContext, init_distributed, shutdown_distributed
from .training import FitResult, fit

__all__ = ["main", "build_model", "build_pre_transform", "run"]

DEFAULT_CHANNELS = 64


def build_pre_transform(config: TrainConfig):
    """Positional encodings and the LRGB-style virtual node, computed once per graph and cached
    with the processed dataset."""
    from .data.positional import AddLapPE, AddRWSE
    from .data.virtual_node import AddVirtualNode

    steps = []
    t = config.transforms
    if t.lap_pe:
        steps.append(AddLapPE(t.lap_pe))
    if t.rwse:
        steps.append(AddRWSE(t.rwse))
    if t.virtual_node:
        steps.append(AddVirtualNode(t.virtual_node))
    return Compose(steps) if steps else None


def _model_class(name: str) -> type:
    from . import models
    from .models.gin_attention_net import GINAttentionNet

    return {"gps": models.GPS, "graph-transformer": models.GraphTransformer, "mpnn-vn": models.MPNNVirtualNode,
            "gin-attention": GINAttentionNet}[name]


def build_model(config: TrainConfig, num_tasks: int) -> nn.Module:
    """The model named in ``config``, with positional-encoding widths and virtual-node categories
    taken from ``config.transforms``.

    Raises:
        ConfigError: a ``model_args`` key the model does not take.
    """
    cls = _model_class(config.model)
    accepted = set(inspect.signature(cls).parameters) - {"self", "out_channels"}
    unknown = sorted(set(config.model_args) - accepted)
    if unknown:
        raise ConfigError(f"unknown model_args {', '.join(map(repr, unknown))} for model {config.model!r}; "
                          f"allowed: {', '.join(sorted(accepted))}")
    kwargs = {"channels": DEFAULT_CHANNELS, **config.model_args}
    derived = {"lap_pe_dim": config.transforms.lap_pe, "rwse_dim": config.transforms.rwse,
               "extra_categories": 1 if config.transforms.virtual_node else 0}
    for key, value in derived.items():
        if key in accepted and value:
            kwargs.setdefault(key, value)
    try:
        return cls(out_channels=num_tasks, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model {config.model!r}: {error}") from None


def _summarise(name: str, metric: str, values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{name}: test {metric} {mean:.4f} ± {std:.4f} over {len(values)} seed{'s' if len(values) > 1 else ''}"


def run_record(seed: int, result: FitResult, wall_seconds: Optional[float] = None) -> dict[str, Any]:
    """One seed's line of ``summary.json``: its best-validation epoch, how far it got and its time
    (``train_seconds``: the training passes of every epoch, resumed ones included; ``wall_seconds``: this
    process, evaluation included)."""
    return {"seed": seed, "best_epoch": result.best.epoch, "valid": result.best.valid, "test": result.best.test,
            "epochs_done": len(result.history), "epoch_seconds": result.mean_epoch_seconds,
            "train_seconds": sum(r.seconds for r in result.history), "wall_seconds": wall_seconds}


def build_summary(config: TrainConfig, dataset: str, metric: str, device: str, world_size: int,
                  runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``: the runs of every seed, the mean and std of their test metric, and ``partial``
    when a seed stopped before ``config.epochs``."""
    tests = [r["test"] for r in runs]
    return {"dataset": dataset, "model": config.model, "metric": metric, "device": device,
            "world_size": world_size, "epochs": config.epochs,
            "partial": any(r["epochs_done"] < config.epochs for r in runs), "runs": runs,
            "test_mean": statistics.fmean(tests), "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "config": json.loads(json.dumps(config, default=lambda o: o.__dict__))}


def run(config: TrainConfig, ctx: DistContext, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Trains one model per seed and returns the summary (also written to ``<out>/summary.json``)."""
    log = print if ctx.is_main else (lambda *_: None)
    try:
        bench: GraphBenchmark = load_dataset(config.dataset, config.root, pre_transform=build_pre_transform(config))
    except ValueError as error:  # unknown dataset name
        raise ConfigError(str(error)) from None
    log(f"{bench.name}: {len(bench.dataset):,} graphs, split "
        f"{' / '.join(f'{len(bench.split[s]):,}' for s in ('train', 'valid', 'test'))}, metric {bench.eval_metric}"
        f"; device {ctx.device}" + (f" x {ctx.world_size} ranks" if ctx.enabled else ""))
    runs = []
    for seed in config.seeds:
        torch.manual_seed(seed)
        model = build_model(config, bench.num_tasks)
        log(f"seed {seed}: {config.model}, {sum(p.numel() for p in model.parameters()):,} parameters")
        out_dir = osp.join(config.out, f"seed{seed}") if config.out else None
        start = time.perf_counter()
        result = fit(model, bench, epochs=config.epochs, batch_size=config.batch_size, optim=config.optim, ctx=ctx,
                     out_dir=out_dir, resume=resume, progress=progress, log=log, seed=seed,
                     num_workers=config.num_workers, compile_model=config.compile)
        runs.append(run_record(seed, result, time.perf_counter() - start))
    device = str(ctx.device) if ctx.device.type != "cuda" else torch.cuda.get_device_name(ctx.device)
    summary = build_summary(config, bench.name, bench.eval_metric, device, ctx.world_size, runs)
    if config.out and ctx.is_main:
        atomic_write_text(osp.join(config.out, "summary.json"), json.dumps(summary, indent=1))
    # the summary line comes from every rank, so that data-parallel runs can be checked for agreement
    prefix = f"[rank {ctx.rank}] " if ctx.enabled else ""
    print(prefix + _summarise(f"{bench.name} / {config.model}", bench.eval_metric, [r["test"] for r in runs])
          + f"; {statistics.fmean(r['epoch_seconds'] for r in runs):.1f} s per epoch")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphattn train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML file, or the name of a shipped config (e.g. gps-molhiv)")
    p.add_argument("--dataset", help="ogbg-* (OGB layout under --root) or peptides-func / peptides-struct")
    p.add_argument("--root", help="folder holding the dataset (omit for the embedded ogbg-molesol)")
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--seed", "--seeds", type=int, nargs="+", dest="seeds")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    p.add_argument("--out", help="folder for logs, checkpoints and summary.json")
    p.add_argument("--resume", action="store_true", help="continue from <out>/seed<k>/last.pt")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[list[str]] = None) -> None:
    args = _parser().parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("dataset", "root", "model", "epochs", "batch_size", "seeds",
                                               "device", "compile", "out")}
    ctx = None
    try:
        config = load_config(args.config, overrides)
        if args.resume and not config.out:
            raise ConfigError("--resume needs --out (the folder holding the checkpoints)")
        try:
            ctx = init_distributed(config.device)
        except (ValueError, RuntimeError) as error:
            raise ConfigError(f"--device {config.device}: {error}") from None
        run(config, ctx, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, MissingDataError, CheckpointError) as error:
        sys.exit(f"graphattn train: error: {error}")
    finally:
        if ctx is not None:
            shutdown_distributed()
