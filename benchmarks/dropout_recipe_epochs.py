"""Recipe check of the counter-based dropout over full epochs: new runs against the old runs' seed-to-seed spread.

The old runs of ``gin-vn-molhiv`` (seeds 0-2) trained with PyTorch's ``bernoulli_`` masks; the new runs are the
same target restarted with the counter-based masks (``graphattn reproduce gin-vn-molhiv``, same seeds, same
code otherwise). Both wrote a per-epoch ``metrics.csv`` (``epoch,train_loss,valid,test,...``). For every epoch
in ``--epochs`` and every metric in ``--metrics``, this reports each side's per-seed values, mean ± std, and
whether the new mean lies within the old runs' range (min-max over seeds): the recipe is unchanged when it does.

    PYTHONPATH=. python benchmarks/dropout_recipe_epochs.py --old <old seed CSVs> --new <new seed CSVs> \\
        --epochs 1 2 --out <file.json>
"""
from __future__ import annotations

import argparse
import csv
import json

from graphattn.utils.stats import mean_std


def read_curve(path: str) -> dict[int, dict[str, float]]:
    """``{epoch: {column: value}}`` of one run's ``metrics.csv``."""
    with open(path) as f:
        return {int(row["epoch"]): {k: float(v) for k, v in row.items() if k != "epoch"} for row in csv.DictReader(f)}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of ``values``."""
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def compare(old: list[dict], new: list[dict], epochs: list[int], metrics: list[str]) -> list[dict]:
    """One row per (epoch, metric): the old and new per-seed values, their spreads, and whether the new mean
    lies within the old runs' min-max range.

    Raises:
        ValueError: an epoch missing from one of the runs.
    """
    rows = []
    for epoch in epochs:
        for side, curves in (("old", old), ("new", new)):
            if any(epoch not in curve for curve in curves):
                raise ValueError(f"--epochs: epoch {epoch} is missing from a {side} run")
        for metric in metrics:
            old_values = [curve[epoch][metric] for curve in old]
            new_values = [curve[epoch][metric] for curve in new]
            old_spread, new_spread = spread(old_values), spread(new_values)
            rows.append({"epoch": epoch, "metric": metric, "old": old_values, "new": new_values,
                         "old_spread": old_spread, "new_spread": new_spread,
                         "new_mean_within_old_range": old_spread["min"] <= new_spread["mean"] <= old_spread["max"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", nargs="+", required=True, help="metrics.csv of each old (PyTorch-mask) run")
    p.add_argument("--new", nargs="+", required=True, help="metrics.csv of each new (counter-mask) run")
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--metrics", nargs="+", default=["valid", "train_loss"])
    p.add_argument("--device", default="cpu", help="where the runs trained (recorded)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    rows = compare([read_curve(f) for f in args.old], [read_curve(f) for f in args.new], args.epochs, args.metrics)
    for row in rows:
        o, n = row["old_spread"], row["new_spread"]
        print(f"epoch {row['epoch']} {row['metric']}: old {o['mean']:.4f} ± {o['std']:.4f} ({o['min']:.4f}-"
              f"{o['max']:.4f}), new {n['mean']:.4f} ± {n['std']:.4f}; new mean within old range: "
              f"{row['new_mean_within_old_range']}")
    with open(args.out, "w") as f:
        json.dump({"config": "gin-vn-molhiv", "dataset": "ogbg-molhiv", "device": args.device,
                   "old": "PyTorch bernoulli_ masks", "new": "counter-based masks (counter-v1)",
                   "old_runs": args.old, "new_runs": args.new, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
