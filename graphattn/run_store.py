"""The run store of ``graphattn reproduce``: every run of a target, kept outside the work tree (default
``$GRAPHATTN_CACHE/runs``, i.e. ``~/.cache/graphattn/runs``) so that a checkout can be replaced without losing
runs.

Layout: one folder per target, ``<store>/<target>/``, holding the output folder of ``graphattn train --out``:

* node-level targets (GAT on Planetoid): ``seed<k>/{record.json, metrics.csv}``, written when seed ``k``
  finishes (a seed is the unit of resumption), and ``summary.json``;
* graph-level targets: ``seed<k>/{last.pt, best.pt, metrics.csv, history.json}`` (``last.pt``: the resumable
  state, written after every epoch and every few minutes inside one) and ``summary.json``;
* ``.lock``: held by a running ``graphattn reproduce`` of the target and by its workers.

This module reads the store: the finished seeds, how far each run got, the summary over them, and the
``--status`` lines.
"""
from __future__ import annotations

import os.path as osp
import statistics
from dataclasses import dataclass
from typing import Any, Optional

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .data import default_cache_dir
from .targets import Target
from .train_cli import build_node_summary, build_summary, read_seed_record, run_record, seed_protocol
from .training import FitResult

__all__ = ["default_store", "target_folder", "node_records", "GraphRun", "graph_runs", "store_summary",
           "status_lines"]


def default_store() -> str:
    """``$GRAPHATTN_CACHE/runs`` (``~/.cache/graphattn/runs``)."""
    return osp.join(default_cache_dir(), "runs")


def target_folder(store: str, target: Target) -> str:
    """Where ``target``'s runs live."""
    return osp.join(osp.expanduser(store), target.name)


def node_records(folder: str, config: TrainConfig) -> dict[int, dict[str, Any]]:
    """The records of the finished seeds of a node-level target, by seed.

    Raises:
        CheckpointError: a record is unreadable or was written by another config.
    """
    protocol = seed_protocol(config)
    records = {seed: read_seed_record(osp.join(folder, f"seed{seed}"), protocol) for seed in config.seeds}
    return {seed: record for seed, record in records.items() if record is not None}


@dataclass
class GraphRun:
    """How far a graph-level run got: its whole epochs (``result``) and the optimiser steps of the next
    epoch saved by a mid-epoch checkpoint."""

    seed: int
    result: FitResult
    steps: int


def graph_runs(folder: str, config: TrainConfig) -> dict[int, GraphRun]:
    """The started runs of a graph-level target (those with a ``last.pt``), by seed.

    Raises:
        CheckpointError: a ``last.pt`` is unreadable.
    """
    runs = {}
    for seed in config.seeds:
        path = osp.join(folder, f"seed{seed}", "last.pt")
        if osp.exists(path):
            state = load_checkpoint(path)
            position = state.get("position")
            runs[seed] = GraphRun(seed, FitResult.from_checkpoint(state), position["done"]["steps"] if position else 0)
    return runs


def store_summary(target: Target, config: TrainConfig, folder: str, device: str) -> Optional[dict[str, Any]]:
    """The summary (``graphattn train``'s ``summary.json`` layout) of the runs in ``folder`` that have a test
    value, ``partial`` unless every seed of ``config`` finished; ``None`` when none has one. ``device``
    describes graph-level runs (node-level records name their own)."""
    if config.node_level:
        records = list(node_records(folder, config).values())
        return build_node_summary(config, records[0]["device"], records) if records else None
    runs = [run_record(r.seed, r.result) for r in graph_runs(folder, config).values() if r.result.best is not None]
    if not runs:
        return None
    summary = build_summary(config, config.dataset, target.metric, device, 1, runs)
    summary["partial"] = summary["partial"] or len(runs) < len(config.seeds)
    return summary


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def _graph_target_line(target: Target, config: TrainConfig, runs: dict[int, GraphRun], folder: str) -> str:
    """The head line of a graph-level target: runs finished and, once a run has timed epochs, the time left
    for all its runs at one job (the epochs left times the mean seconds per epoch of the runs so far)."""
    epochs = config.epochs
    done = {seed: len(run.result.history) for seed, run in runs.items()}
    finished = sum(d >= epochs for d in done.values())
    line = f"{target.name}: {len(config.seeds)} runs x {epochs} epochs, {finished} finished ({folder})"
    timed = [run.result.mean_epoch_seconds for run in runs.values() if run.result.history]
    left = sum(max(epochs - done.get(seed, 0), 0) for seed in config.seeds)
    if timed and left:
        line += f", about {_duration(left * statistics.fmean(timed))} left at one job"
    return line


def status_lines(target: Target, store: str) -> list[str]:
    """``--status`` of one target: seeds done and the time left (node-level), or per run the epochs done and
    the time left at the seconds per epoch so far (graph-level; training passes only, evaluation not counted)."""
    if not target.available:
        return [f"{target.name}: unavailable (config {target.config} is not in this checkout)"]
    config, folder = target.load(), target_folder(store, target)
    try:
        if config.node_level:
            records, total = node_records(folder, config), len(config.seeds)
            line = f"{target.name}: {len(records)}/{total} seeds done ({folder})"
            if records:
                tests = [r["test_acc"] for r in records.values()]
                per_seed = statistics.fmean(r["seconds"] for r in records.values())
                so_far = " so far" if len(records) < total else ""
                line += f", test {target.metric} {statistics.fmean(tests):.4f}{so_far}, {per_seed:.1f} s per seed"
                if len(records) < total:
                    line += f", about {_duration((total - len(records)) * per_seed)} left at one job"
            return [line]
        runs, epochs = graph_runs(folder, config), config.epochs
        lines = [_graph_target_line(target, config, runs, folder)]
        for seed in config.seeds:
            run = runs.get(seed)
            if run is None:
                lines.append(f"  seed {seed}: not started")
                continue
            done, best = len(run.result.history), run.result.best
            line = f"  seed {seed}: {done}/{epochs} epochs" + (f" and {run.steps} steps" if run.steps else "")
            if best is not None:
                line += f", test {target.metric} {best.test:.4f} (best epoch {best.epoch})"
            if done >= epochs:
                line += ", finished"
            elif done:
                per_epoch = run.result.mean_epoch_seconds
                line += f", {per_epoch:.1f} s per epoch, about {_duration((epochs - done) * per_epoch)} left"
            lines.append(line)
        return lines
    except CheckpointError as error:
        return [f"{target.name}: {error}"]
