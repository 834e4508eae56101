"""graphattn's numbers against the published ones: one row per registered target (:mod:`graphattn.targets`)
and device, read from the summaries in ``benchmarks/results/train/`` (``<stem>-<device type>.json``, written by
``graphattn reproduce`` or ``graphattn train --results`` / ``benchmarks/collect_train.py``), written as
``reproductions.md`` and ``reproductions.json`` next to them.

Verdicts: ``within one std`` when every run of the published protocol finished and
:math:`|\\bar{x}_{ours} - \\bar{x}_{pub}| \\le s_{pub}` (the published std); ``outside one std`` otherwise;
``partial`` while runs are missing or short of the schedule (ours is then the mean over the finished runs, or,
before any has finished, over the runs as far as they got); ``no target``
when nothing was published; ``not run`` without a summary; ``unavailable`` when neither a summary nor the
config is in this checkout.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, Optional

from .checkpoint import atomic_write_text
from .targets import TARGETS, Target
from .utils.stats import mean_std

__all__ = ["DEVICE_TYPES", "results_path", "runs_done", "runs_done_cell", "verdict", "report_row", "report_rows",
           "write_report"]

DEVICE_TYPES = ("cpu", "cuda")


def results_path(results_dir: str, target: Target, device_type: str) -> str:
    """The summary file of ``target`` run on ``device_type``."""
    return osp.join(results_dir, f"{target.results}-{device_type}.json")


def _node_level(summary: dict[str, Any]) -> bool:
    return "seeds_done" in summary


def _finished(target: Target, summary: dict[str, Any]) -> list[dict[str, Any]]:
    epochs = target.epochs or summary.get("epochs")
    return [r for r in summary["runs"] if r["seed"] in target.seeds
            and (_node_level(summary) or r["epochs_done"] >= epochs)]


def runs_done(target: Target, summary: dict[str, Any]) -> int:
    """The runs of ``target``'s protocol that ``summary`` holds finished: its seeds (node-level: a record is
    a finished seed), graph-level ones with every epoch of the schedule."""
    return len(_finished(target, summary))


def _ours(target: Target, summary: dict[str, Any]) -> tuple[float, float]:
    """Mean and std of the test metric over the finished runs; the summary's own (every run as far as it got)
    when none or all of them finished, or for node-level records (each one a finished seed)."""
    finished = _finished(target, summary)
    if _node_level(summary) or not finished or len(finished) == len(summary["runs"]):
        return summary["test_mean"], summary["test_std"]
    return mean_std(r["test"] for r in finished)


def verdict(target: Target, summary: Optional[dict[str, Any]]) -> str:
    """The verdict of ``target`` on ``summary`` (``None``: no summary); see the module's docstring."""
    if summary is None:
        return "not run" if target.available else "unavailable"
    partial = runs_done(target, summary) < len(target.seeds)
    if target.published is None:
        return "no target (partial)" if partial else "no target"
    if partial:
        return "partial"
    mean, std = target.published
    return "within one std" if abs(_ours(target, summary)[0] - mean) <= std else "outside one std"


def report_row(target: Target, summary: Optional[dict[str, Any]], results: Optional[str] = None) -> dict[str, Any]:
    """One row of the report: the target, ours (mean, std, runs done), the published value, the verdict."""
    row = {"target": target.name, "config": target.config, "metric": target.metric, "runs": len(target.seeds),
           "epochs": target.epochs, "published_mean": target.published[0] if target.published else None,
           "published_std": target.published[1] if target.published else None, "source": target.source,
           "results": results, "dataset": None, "device": None, "runs_done": 0, "epochs_done": None, "mean": None,
           "std": None, "difference": None, "verdict": verdict(target, summary)}
    if summary is not None:
        ours_mean, ours_std = _ours(target, summary)
        row.update(dataset=summary["dataset"], device=summary["device"], runs_done=runs_done(target, summary),
                   mean=ours_mean, std=ours_std,
                   epochs_done=None if _node_level(summary) else [r["epochs_done"] for r in summary["runs"]])
        if target.published:
            row["difference"] = ours_mean - target.published[0]
    return row


def report_rows(results_dir: str) -> list[dict[str, Any]]:
    """The rows of every registered target: one per device type with a summary in ``results_dir``, or one
    without a summary."""
    rows = []
    for target in TARGETS.values():
        found = [path for path in (results_path(results_dir, target, d) for d in DEVICE_TYPES) if osp.exists(path)]
        for path in found:
            with open(path) as f:
                rows.append(report_row(target, json.load(f), osp.basename(path)))
        if not found:
            rows.append(report_row(target, None))
    return rows


def _cell(value: Optional[float], signed: bool = False) -> str:
    return "—" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"


def runs_done_cell(row: dict[str, Any]) -> str:
    """How far a report row got: ``"K of N"``, and on a partial graph-level row the epochs of the unfinished
    runs and the count not started, e.g. ``"10 of 20 (unfinished: 37, 12 of 100 epochs; 8 not started)"``."""
    cell = f"{row['runs_done']} of {row['runs']}"
    if not row.get("epochs_done") or row["runs_done"] >= row["runs"]:
        return cell
    unfinished = [e for e in row["epochs_done"] if row["epochs"] is None or e < row["epochs"]]
    parts = [f"unfinished: {', '.join(map(str, unfinished))} of {row['epochs'] or '?'} epochs"] if unfinished else []
    not_started = row["runs"] - row["runs_done"] - len(unfinished)
    if not_started > 0:
        parts.append(f"{not_started} not started")
    return f"{cell} ({'; '.join(parts)})" if parts else cell


def write_report(results_dir: str) -> list[dict[str, Any]]:
    """Writes ``reproductions.md`` and ``reproductions.json`` in ``results_dir``; returns the rows."""
    rows = report_rows(results_dir)
    lines = ["# Reproductions of published numbers", "",
             "Written by `graphattn reproduce` from the summaries in this folder. Test metric at the "
             "best-validation epoch (node-level: of the model saved by early stopping), mean ± std over the runs "
             "(on a partial row: the finished ones, or before any has finished, every run as far as it got). "
             "Verdict `within one std`: every run of the published protocol finished and |ours − published| ≤ the "
             "published std; `partial`: runs missing or short of the schedule.", "",
             "| target | dataset | metric | device | runs done | ours | published | ours − published | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ours = "—" if r["mean"] is None else f"{r['mean']:.4f} ± {r['std']:.4f}"
        published = "—" if r["published_mean"] is None else f"{r['published_mean']:.4f} ± {r['published_std']:.4f}"
        lines.append(f"| {r['target']} | {r['dataset'] or '—'} | {r['metric']} | {r['device'] or '—'} | "
                     f"{runs_done_cell(r)} | {ours} | {published} | {_cell(r['difference'], True)} | {r['verdict']} |")
    lines += ["", "Sources:", ""] + [f"- {t.name}: {t.source}" for t in TARGETS.values()]
    atomic_write_text(osp.join(results_dir, "reproductions.md"), "\n".join(lines) + "\n")
    atomic_write_text(osp.join(results_dir, "reproductions.json"), json.dumps({"targets": rows}, indent=1) + "\n")
    return rows
