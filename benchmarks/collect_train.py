"""Collects the seeds of one training config, run as separate ``graphattn train`` processes and finished
or not, into the ``summary.json`` layout of ``graphattn train`` (with ``partial`` and each seed's
``epochs_done``), plus each seed's ``metrics.csv``: the files of ``benchmarks/results/train/``.

    python benchmarks/collect_train.py --config gin-vn-molhiv --device "cpu (2 cores)" \\
        --out benchmarks/results/train/ogbg-molhiv-gin-vn-cpu.json runs/gin-vn/s0/seed0 runs/gin-vn/s1/seed1

Each run folder is a ``<out>/seed<N>`` folder of ``graphattn train`` holding ``last.pt``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from typing import Optional

from graphattn.checkpoint import atomic_write_text, load_checkpoint
from graphattn.cli import one_line_errors
from graphattn.config import load_config
from graphattn.data import dataset_metric
from graphattn.train_cli import build_summary, run_record
from graphattn.training import FitResult


SEED_FOLDER = re.compile(r"seed(\d+)/?$")


def collect(config_name: str, run_dirs: list[str], device: str) -> tuple[dict, dict[int, str]]:
    """The summary of ``run_dirs`` and, per seed, its ``metrics.csv``."""
    config = load_config(config_name)
    runs, metrics = [], {}
    for folder in run_dirs:
        seed = int(SEED_FOLDER.search(folder).group(1))
        state = load_checkpoint(os.path.join(folder, "last.pt"))
        runs.append(run_record(seed, FitResult.from_checkpoint(state)))
        metrics[seed] = os.path.join(folder, "metrics.csv")
    config.seeds = [r["seed"] for r in runs]
    return build_summary(config, config.dataset, dataset_metric(config.dataset), device, 1, runs), metrics


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the config the runs were trained with (name or YAML file)")
    p.add_argument("--device", required=True, help="the device the runs were trained on, in words")
    p.add_argument("--out", required=True, help="summary JSON; the metrics go next to it as <stem>-seed<N>-metrics.csv")
    p.add_argument("runs", nargs="+", help="seed folders (<out>/seed<N>) holding last.pt")
    args = p.parse_args(argv)
    for folder in args.runs:
        if not SEED_FOLDER.search(folder):
            p.error(f"{folder}: not a seed folder of graphattn train (<out>/seed<N>)")
    summary, metrics = collect(args.config, args.runs, args.device)
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    stem = os.path.splitext(args.out)[0]
    for seed, path in metrics.items():
        shutil.copyfile(path, f"{stem}-seed{seed}-metrics.csv")
    done = ", ".join(f"seed {r['seed']}: {r['epochs_done']}/{summary['epochs']} epochs" for r in summary["runs"])
    print(f"{summary['dataset']} / {summary['model']}: test {summary['metric']} {summary['test_mean']:.4f} ± "
          f"{summary['test_std']:.4f} ({done}) -> {args.out}")


if __name__ == "__main__":
    with one_line_errors(f"python {sys.argv[0]}"):
        main()
