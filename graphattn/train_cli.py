"""``graphattn train``: a ready-made model on an OGB / LRGB / TU benchmark or a Planetoid graph (Cora, CiteSeer).

OGB / LRGB datasets come with their official split and evaluator; TU datasets (MUTAG, NCI1, PROTEINS) with
GraphTrans's random 80/10/10 split, drawn per seed (:func:`graphattn.data.tu.random_split_indices`), and
accuracy; Planetoid graphs with the public split, for transductive node classification.

Examples::

    graphattn train --dataset ogbg-molesol --epochs 2
    graphattn train --config gps-molhiv --root data/ogb --device cuda --seeds 0 1 2 --out runs/molhiv
    graphattn train --config graphtrans-small-nci1 --root data/tu --seeds 0-19 --out runs/graphtrans-nci1
    torchrun --nproc_per_node=4 -m graphattn.cli train --config mpnn-vn-peptides-func --root data/peptides
    graphattn train --config gat-cora --root data/planetoid --seeds 0-99 --out runs/gat-cora

Graph-level runs write, per seed, ``<out>/seed<k>/{metrics.csv, history.json, last.pt, best.pt}`` and
``<out>/summary.json``; they resume from ``last.pt`` with ``--resume``. ``last.pt`` is written after every
epoch, every ``--checkpoint-every`` seconds inside an epoch, and on ``SIGTERM``, after which the command
exits with status 143 (single-process runs with ``--out``).

Node-level runs (model ``gat``, datasets ``cora``/``citeseer``) train full batch with the GAT authors' early
stopping (:mod:`graphattn.transductive`) and write, as each seed finishes, ``<out>/seed<k>/metrics.csv``
(its curve) and ``<out>/seed<k>/record.json``, then rewrite ``<out>/summary.json`` (mean and std over the
finished seeds; ``partial`` until every requested seed is done). The output folder defaults to
``runs/<config name>``. Running the command again skips the seeds whose ``record.json`` exists (written by
the same config; another config is refused), so a killed run of 100 seeds is continued by repeating it.
``--results PATH`` also writes the summary to ``PATH`` and every seed's curve to ``<PATH stem>-curves.csv``
(for ``benchmarks/results/train/``).

Errors in the command line, the config or the data are reported on one line with a non-zero exit status.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import inspect
import io
import json
import os.path as osp
import statistics
import sys
import time
from typing import Any, Optional

import torch
from torch import nn
from torch_geometric.transforms import Compose

from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_text
from .config import MODELS, ConfigError, TrainConfig, load_config, parse_seeds
from .data import PLANETOID, CorruptDataError, MissingDataError, load_dataset, load_planetoid
from .data.benchmarks import GraphBenchmark
from .distributed import DistContext, init_distributed, shutdown_distributed
from .interrupt import CheckpointSchedule, TrainingStopped
from .progress import track
from .sparsify import GTSP, GTSPConfig
from .training import FitResult, fit
from .transductive import NodeEpoch, SeedResult, fit_transductive
from .utils.stats import mean_std

__all__ = ["main", "build_model", "build_pre_transform", "run", "run_node_level", "seed_protocol", "read_seed_record",
           "write_node_results"]

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
            "gin-attention": GINAttentionNet, "graphtrans": models.GraphTrans, "gat": models.GAT}[name]


def build_model(config: TrainConfig, num_tasks: int, num_features: Optional[int] = None, seed: int = 0) -> nn.Module:
    """The model named in ``config``, with positional-encoding widths and virtual-node categories
    taken from ``config.transforms``; ``num_features`` is the input width of the models that take one
    (``in_channels``: node-level models, GraphTrans; the others embed OGB's categorical features themselves).
    With a ``gtsp`` section the model is wrapped in :class:`~graphattn.sparsify.GTSP` (built after the model, so
    the model's initial weights are those of the same seed without GTSP; ``seed``: GTSP's initial head subset).

    Raises:
        ConfigError: a ``model_args`` key the model does not take.
    """
    cls = _model_class(config.model)
    parameters = inspect.signature(cls).parameters
    accepted = set(parameters) - {"self", "out_channels", "in_channels"}
    unknown = sorted(set(config.model_args) - accepted)
    if unknown:
        raise ConfigError(f"unknown model_args {', '.join(map(repr, unknown))} for model {config.model!r}; "
                          f"allowed: {', '.join(sorted(accepted))}")
    kwargs = dict(config.model_args)
    if "in_channels" in parameters:
        if num_features is None:
            raise ConfigError(f"model {config.model!r} needs the number of node features")
        kwargs["in_channels"] = num_features
    if not config.node_level:
        kwargs.setdefault("channels", DEFAULT_CHANNELS)
    derived = {"lap_pe_dim": config.transforms.lap_pe, "rwse_dim": config.transforms.rwse,
               "extra_categories": 1 if config.transforms.virtual_node else 0}
    for key, value in derived.items():
        if key in accepted and value:
            kwargs.setdefault(key, value)
    try:
        model = cls(out_channels=num_tasks, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model {config.model!r}: {error}") from None
    return model if config.gtsp is None else _with_gtsp(model, config, seed)


def _with_gtsp(model: nn.Module, config: TrainConfig, seed: int) -> GTSP:
    """``model`` wrapped in GTSP with ``config.gtsp`` (and the run's epochs)."""
    fields = {f.name for f in dataclasses.fields(GTSPConfig)} - {"epochs"}
    unknown = sorted(set(config.gtsp) - fields)
    if unknown:
        raise ConfigError(f"unknown gtsp key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(sorted(fields))}")
    try:
        return GTSP(model, GTSPConfig(**config.gtsp, epochs=config.epochs), seed=seed)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"gtsp: {error}") from None


def _config_values(config: TrainConfig) -> dict[str, Any]:
    """``config`` as plain JSON values."""
    return json.loads(json.dumps(config, default=lambda o: o.__dict__))


def _summarise(name: str, metric: str, values: list[float]) -> str:
    mean, std = mean_std(values)
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
    test_mean, test_std = mean_std(r["test"] for r in runs)
    return {"dataset": dataset, "model": config.model, "metric": metric, "device": device,
            "world_size": world_size, "epochs": config.epochs,
            "partial": any(r["epochs_done"] < config.epochs for r in runs), "runs": runs,
            "test_mean": test_mean, "test_std": test_std,
            "config": _config_values(config)}


def run(config: TrainConfig, ctx: DistContext, resume: bool = False, progress: bool = True,
        schedule: Optional[CheckpointSchedule] = None) -> dict[str, Any]:
    """Trains one model per seed and returns the summary (also written to ``<out>/summary.json``);
    ``schedule``: mid-epoch checkpoints (:func:`graphattn.training.fit`)."""
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
        model = build_model(config, bench.num_tasks, bench.dataset.num_features, seed)
        log(f"seed {seed}: {config.model}, {sum(p.numel() for p in model.parameters()):,} parameters")
        out_dir = osp.join(config.out, f"seed{seed}") if config.out else None
        start = time.perf_counter()
        result = fit(model, bench.for_run(seed), epochs=config.epochs, batch_size=config.batch_size,
                     optim=config.optim, ctx=ctx, out_dir=out_dir, resume=resume, progress=progress, log=log,
                     seed=seed, num_workers=config.num_workers, compile_model=config.compile, schedule=schedule,
                     select_epochs=config.select_epochs)
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


#: config keys that leave a seed's numbers unchanged: runs differing only in them share an output folder
_RUN_ONLY_KEYS = ("seeds", "out", "root", "device", "num_workers", "compile")
_CURVE_FIELDS = [f.name for f in dataclasses.fields(NodeEpoch)]


def seed_protocol(config: TrainConfig) -> dict[str, Any]:
    """The config as stored with every seed's record: what fixes the seed's numbers."""
    return {k: v for k, v in _config_values(config).items() if k not in _RUN_ONLY_KEYS}


def _device_name(device: torch.device) -> str:
    return str(device) if device.type != "cuda" else torch.cuda.get_device_name(device)


def _curve_csv(curve: list[NodeEpoch]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataclasses.asdict(point) for point in curve)
    return text.getvalue()


def _write_seed(folder: str, result: SeedResult, device: str, protocol: dict[str, Any]) -> dict[str, Any]:
    """``metrics.csv`` (the curve), then ``record.json`` (the seed counts as done once it exists)."""
    atomic_write_text(osp.join(folder, "metrics.csv"), _curve_csv(result.curve))
    record = {k: v for k, v in dataclasses.asdict(result).items() if k != "curve"}
    record.update(device=device, threads=torch.get_num_threads(), config=protocol)
    atomic_write_text(osp.join(folder, "record.json"), json.dumps(record, indent=1) + "\n")
    return record


def read_seed_record(folder: str, protocol: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The record of a finished seed, or ``None`` when the seed has not finished.

    Raises:
        CheckpointError: the record is unreadable or was written by another config.
    """
    path = osp.join(folder, "record.json")
    if not osp.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        stored = record["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: unreadable seed record ({type(error).__name__}: {error}); delete it to "
                              f"run this seed again") from None
    changed = _differences(stored, protocol)
    if changed:
        raise CheckpointError(f"{path}: written by another config (differs in {', '.join(changed)}); pass another "
                              f"--out or delete {folder}")
    return record


def _differences(stored: dict[str, Any], protocol: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings of ``stored`` (a record's config) that ``protocol`` gives another value. A setting that the
    record lacks was added to the package after the record was written, with a default that kept the old
    behaviour, so it is not a difference."""
    changed = []
    for key, value in stored.items():
        mine = protocol.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            changed += _differences(value, mine, f"{prefix}{key}.")
        elif key not in protocol or mine != value:
            changed.append(prefix + key)
    return sorted(changed)


def build_node_summary(config: TrainConfig, device: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json`` of a node-level run: the finished seeds' records, mean and std of their test and
    validation accuracy, epochs and seconds; ``partial`` while seeds of ``config.seeds`` are missing."""
    def column(key: str) -> tuple[float, float]:
        return mean_std(r[key] for r in records)

    (test_mean, test_std), (val_mean, val_std) = column("test_acc"), column("val_acc")
    return {"dataset": config.dataset, "model": config.model, "conv": config.model_args.get("conv"),
            "metric": "accuracy", "device": device, "seeds_requested": len(config.seeds),
            "seeds_done": len(records), "partial": len(records) < len(config.seeds),
            "test_mean": test_mean, "test_std": test_std, "val_acc_mean": val_mean, "val_acc_std": val_std,
            "epochs_run_mean": column("epochs_run")[0], "seconds_mean": column("seconds")[0],
            "cpu_seconds_mean": column("cpu_seconds")[0],
            "runs": [{k: v for k, v in r.items() if k != "config"} for r in records], "config": seed_protocol(config)}


def write_node_results(path: str, summary: dict[str, Any], out: str) -> None:
    """The summary at ``path`` and the curves of its seeds, one file with a ``seed`` column, at
    ``<stem>-curves.csv.gz`` (gzip without a timestamp, so that equal curves give equal bytes)."""
    lines = ["seed," + ",".join(_CURVE_FIELDS)]
    for run_ in summary["runs"]:
        with open(osp.join(out, f"seed{run_['seed']}", "metrics.csv")) as f:
            lines += [f"{run_['seed']},{line}" for line in f.read().splitlines()[1:]]
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    atomic_write_bytes(osp.splitext(path)[0] + "-curves.csv.gz", gzip.compress(("\n".join(lines) + "\n").encode(),
                                                                               mtime=0))


def run_node_level(config: TrainConfig, device: torch.device, out: str, results: Optional[str] = None,
                   progress: bool = True) -> dict[str, Any]:
    """Trains a node-level model on a Planetoid graph for every seed of ``config`` that ``out`` does not
    hold yet, writing each seed's record as it finishes and the summary after it; returns the summary."""
    if config.dataset not in PLANETOID:
        raise ConfigError(f"model {config.model!r} is node-level: use dataset {' or '.join(PLANETOID)}, "
                          f"got {config.dataset!r}")
    if config.root is None:
        raise MissingDataError(f"{config.dataset} does not ship with graphattn; pass --root <folder holding "
                               f"{PLANETOID[config.dataset]}/raw/>")
    bench = load_planetoid(config.dataset, config.root, normalize_features=config.transforms.normalize_features)
    data = bench.data
    print(f"{bench.name}: {data.num_nodes:,} nodes, {data.num_edges:,} edges, {bench.num_features:,} features, "
          f"{bench.num_classes} classes, split {int(data.train_mask.sum())} / {int(data.val_mask.sum())} / "
          f"{int(data.test_mask.sum())}; {config.model} with {config.model_args.get('conv', 'its default conv')}; "
          f"device {device}, {torch.get_num_threads()} thread(s); records in {out}")
    protocol, name = seed_protocol(config), _device_name(device)
    records, summary = [], {}
    for seed in track(config.seeds, desc=f"{bench.name} seeds", disable=not progress):
        folder = osp.join(out, f"seed{seed}")
        record = read_seed_record(folder, protocol)
        if record is None:
            torch.manual_seed(seed)
            model = build_model(config, bench.num_classes, bench.num_features)
            result = fit_transductive(model, bench, seed=seed, max_epochs=config.epochs, patience=config.patience,
                                      optim=config.optim, device=device)
            record = _write_seed(folder, result, name, protocol)
            print(f"seed {seed}: {result.epochs_run} epochs{' (early stop)' if result.stopped_early else ''}, "
                  f"saved epoch {result.best_epoch}: val acc {result.val_acc:.4f} loss {result.val_loss:.4f}, "
                  f"test acc {result.test_acc:.4f}; {result.seconds:.1f} s ({result.cpu_seconds:.1f} s CPU)")
        else:
            print(f"seed {seed}: finished before, test acc {record['test_acc']:.4f} ({folder}/record.json)")
        records.append(record)
        summary = build_node_summary(config, name, records)
        atomic_write_text(osp.join(out, "summary.json"), json.dumps(summary, indent=1) + "\n")
    if results:
        write_node_results(results, summary, out)
    print(f"{bench.name} / {config.model}: test accuracy {summary['test_mean']:.4f} ± {summary['test_std']:.4f} over "
          f"{len(records)} seed{'s' if len(records) > 1 else ''}; {summary['epochs_run_mean']:.0f} epochs, "
          f"{summary['seconds_mean']:.1f} s per seed")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphattn train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML file, or the name of a shipped config (e.g. gps-molhiv)")
    p.add_argument("--dataset", help="ogbg-* (OGB layout under --root), peptides-func / peptides-struct, "
                                     "mutag / nci1 / proteins (TU, <root>/<NAME>/raw/), or "
                                     "cora / citeseer (node-level, <root>/<Name>/raw/ind.<name>.*)")
    p.add_argument("--root", help="folder holding the dataset (omit for the embedded ogbg-molesol)")
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--epochs", type=int, help="epochs (node-level: the most epochs, early stopping ends before)")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--seed", "--seeds", nargs="+", dest="seeds", help="seeds and ranges, e.g. 0 1 2 or 0-99")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the model")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads); default: 1 for node-level "
                                               "models, PyTorch's default otherwise")
    p.add_argument("--out", help="folder for logs, checkpoints and summary.json (node-level: default "
                                 "runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/seed<k>/last.pt (node-level runs "
                                                         "always skip the seeds finished in --out)")
    p.add_argument("--checkpoint-every", type=float, dest="checkpoint_every", metavar="SECONDS",
                   help="graph-level runs with --out: also write last.pt inside an epoch this often")
    p.add_argument("--results", help="node-level: also write the summary to this JSON file and the curves next to "
                                     "it (e.g. benchmarks/results/train/cora-gat-cpu.json)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[list[str]] = None) -> None:
    args = _parser().parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("dataset", "root", "model", "epochs", "batch_size", "device",
                                               "compile", "out")}
    ctx = None
    try:
        overrides["seeds"] = parse_seeds(args.seeds) if args.seeds else None
        config = load_config(args.config, overrides)
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        if args.threads or config.node_level:
            torch.set_num_threads(args.threads or 1)
        if config.dataset in PLANETOID and not config.node_level:
            raise ConfigError(f"{config.dataset} is a node-level dataset (one graph): use a node-level model "
                              f"(--model gat or a config such as gat-{config.dataset})")
        if args.results and not config.node_level:
            raise ConfigError("--results is for node-level runs; collect graph-level seeds with "
                              "benchmarks/collect_train.py")
        if args.resume and not config.out and not config.node_level:
            raise ConfigError("--resume needs --out (the folder holding the checkpoints)")
        if args.checkpoint_every is not None and (args.checkpoint_every < 0 or not config.out or config.node_level):
            raise ConfigError(f"--checkpoint-every must be >= 0 seconds and needs --out and a graph-level model, "
                              f"got {args.checkpoint_every}")
        try:
            ctx = init_distributed(config.device)
        except (ValueError, RuntimeError) as error:
            raise ConfigError(f"--device {config.device}: {error}") from None
        if config.node_level:
            if ctx.enabled:
                raise ConfigError(f"model {config.model!r} trains one graph in one process; run it without torchrun")
            stem = osp.splitext(osp.basename(args.config))[0] if args.config else f"{config.dataset}-{config.model}"
            run_node_level(config, ctx.device, config.out or osp.join("runs", stem), args.results,
                           progress=not args.no_progress)
        else:
            if config.out and not ctx.enabled:
                with CheckpointSchedule(args.checkpoint_every).handling_sigterm() as schedule:
                    run(config, ctx, resume=args.resume, progress=not args.no_progress, schedule=schedule)
            else:
                run(config, ctx, resume=args.resume, progress=not args.no_progress)
    except TrainingStopped as stopped:
        print(f"graphattn train: {stopped}; continue with --resume", file=sys.stderr)
        sys.exit(143)
    except (ConfigError, MissingDataError, CorruptDataError, CheckpointError) as error:
        sys.exit(f"graphattn train: error: {error}")
    finally:
        if ctx is not None:
            shutdown_distributed()
