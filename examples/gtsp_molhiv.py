"""GTSP on ogbg-molhiv: a dense GPS against GPS sparsified by each GTSP component and by their
combination, each at two levels of compression (the printed table gives the FLOPs cut each reaches).

For every variant and seed: train (masked model, GTSP hooks after every optimiser step and
epoch), ``export()`` the smaller model, then report the official OGB ROC-AUC of the exported
model on the test split (mean ± std over seeds), its FLOPs per graph (:func:`count_flops` on
test graphs) and its measured inference time against the dense model.

CPU-sized default (a subset of the training graphs, a few epochs, a small GPS, 2 seeds):

    OMP_NUM_THREADS=1 python examples/gtsp_molhiv.py

GPU schedule (all 32,901 training graphs, GraphGPS-sized model, 5 seeds):

    python examples/gtsp_molhiv.py --device cuda --train-graphs 0 --epochs 100 --channels 64 \
        --layers 10 --heads 4 --batch-size 32 --lr 1e-4 --seeds 5 --out examples/results/gtsp_molhiv_gpu

``--root`` is a folder holding ``ogbg_molhiv/`` in OGB's layout (required); processed files go to
``$GRAPHATTN_CACHE`` when it is read-only.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import platform
import statistics
import time
from typing import Dict, List

import torch
from torch_geometric.loader import DataLoader

from graphattn.config import OptimConfig
from graphattn.data import load_dataset
from graphattn.models import GPS
from graphattn.sparsify import GTSP, GTSPConfig
from graphattn.training import build_optimizer, evaluate, train_epoch
from graphattn.utils import count_flops, mean_std, time_inference

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: variant -> GTSPConfig fields. The levels aimed at about 30% / 50% fewer FLOPs of the whole model where a
#: component alone can reach it (edges only cut attention FLOPs); the weights variants can fall short of it under
#: PyTorch's flop counter (dense GEMMs count the pruned zeros), as the printed table shows.
VARIANTS: Dict[str, dict] = {
    "dense": {},
    "tokens-30": {"token_ratio": 0.4},
    "tokens-50": {"token_ratio": 0.1},
    "edges-50": {"edge_ratio": 0.5},
    "heads-30": {"head_density": 0.5},
    "heads-50": {"head_density": 0.25},
    "layers-30": {"layer_keep": 0.5},
    "layers-50": {"layer_keep": 0.25},
    "weights-30": {"weight_density": 0.7},
    "weights-50": {"weight_density": 0.45},
    "combined-30": {"token_ratio": 0.75, "head_density": 0.75, "weight_density": 0.85},
    "combined-50": {"token_ratio": 0.5, "head_density": 0.5, "weight_density": 0.8},
}


def build_model(args) -> GPS:
    return GPS(args.channels, 1, num_layers=args.layers, heads=args.heads, local_conv="gine",
               dropout=args.dropout, attn_dropout=args.attn_dropout, head_layers=2)


def run_variant(name: str, seed: int, bench, args) -> dict:
    torch.manual_seed(seed)
    device = torch.device(args.device)
    train = bench.subset("train")
    if args.train_graphs:
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:args.train_graphs]]
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model = build_model(args)
    steps = len(loader)
    gtsp = None
    if name != "dense":
        config = GTSPConfig(epochs=args.epochs, head_update_frequency=max(1, steps // 2), **VARIANTS[name])
        gtsp = GTSP(model, config, seed=seed)
    trained = (gtsp or model).to(device)
    optimizer = build_optimizer(trained, OptimConfig(optimizer="adam", lr=args.lr))
    begin = time.perf_counter()
    for _ in range(args.epochs):
        train_epoch(trained, loader, optimizer, bench.task_type, device,
                    step_hook=gtsp.step if gtsp is not None else None)
        if gtsp is not None:
            gtsp.epoch_end()
    train_seconds = time.perf_counter() - begin
    final = gtsp.export() if gtsp is not None else model.eval()
    return {"variant": name, "seed": seed, "model": final, "train_seconds": train_seconds,
            "test_rocauc": evaluate(final, bench.subset("test"), bench, device, 256),
            "state": gtsp.state() if gtsp is not None else {}}


def flops_per_graph(model: torch.nn.Module, batches: List, num_graphs: int) -> dict:
    flops = [count_flops(model, b).as_dict() for b in batches]
    return {k: sum(f[k] for f in flops) / num_graphs for k in flops[0]}


def interleaved_times(models: Dict[str, torch.nn.Module], batches: List, repeats: int) -> Dict[str, float]:
    """Median seconds per pass over ``batches`` of every model, the models taking turns in every
    repeat so that they all see the same load of a shared machine."""
    for model in models.values():
        time_inference(model, batches, repeats=1, warmup=1)
    times: Dict[str, List[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(time_inference(model, batches, repeats=1, warmup=0))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding ogbg_molhiv/ in OGB's layout")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-graphs", type=int, default=2000, help="training subset size (0: all)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--attn-dropout", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--timing-graphs", type=int, default=1024, help="test graphs for FLOPs and timing")
    parser.add_argument("--timing-repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=osp.join("runs", "examples", "gtsp_molhiv_cpu"),
                        help="writes OUT.json and OUT.md (examples/results/... updates the tracked results)")
    args = parser.parse_args()

    bench = load_dataset("ogbg-molhiv", root=args.root)
    device = torch.device(args.device)
    timing_set = bench.subset("test")[:args.timing_graphs]
    batches = [b.to(device) for b in DataLoader(timing_set, batch_size=256)]
    rows, models = [], {}
    for name in args.variants:
        runs = [run_variant(name, seed, bench, args) for seed in range(args.seeds)]
        models[name] = runs[0]["model"]
        aucs = [r["test_rocauc"] for r in runs]
        auc_mean, auc_std = mean_std(aucs)
        row = {"variant": name, "config": VARIANTS[name], "test_rocauc": aucs,
               "auc_mean": auc_mean, "auc_std": auc_std,
               "train_seconds": [r["train_seconds"] for r in runs], "state": runs[0]["state"],
               "flops_per_graph": flops_per_graph(models[name], batches, len(timing_set))}
        rows.append(row)
        print(f"{name:12s} AUC {row['auc_mean']:.4f} ± {row['auc_std']:.4f}  "
              f"FLOPs/graph {row['flops_per_graph']['total'] / 1e6:.2f} M  "
              f"train {statistics.mean(row['train_seconds']):.0f} s/seed", flush=True)
    times = interleaved_times(models, batches, args.timing_repeats)
    for row in rows:
        row["seconds"] = times[row["variant"]]
    write(rows, args)


def write(rows: List[dict], args) -> None:
    dense = next((r for r in rows if r["variant"] == "dense"), None)
    device = args.device if args.device != "cpu" else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} thread(s))"
    lines = [f"GTSP on ogbg-molhiv — device: {device}; GPS {args.layers} layers, {args.channels} channels, "
             f"{args.heads} heads, GINE; {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr}, "
             f"train graphs: {args.train_graphs or 'all'}; seeds: {args.seeds}; ROC-AUC (OGB evaluator) of the "
             f"exported model on the full test split at the last epoch; FLOPs and time on "
             f"{args.timing_graphs} test graphs (batch 256; time: median of {args.timing_repeats} passes, "
             f"the models taking turns; seed-0 models).", "",
             "| variant | config | test ROC-AUC | MFLOPs / graph | FLOPs cut | attention FLOPs cut | time (ms) "
             "| speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["flops_per_graph"]
        cut = attn_cut = speed = ""
        if dense is not None:
            d = dense["flops_per_graph"]
            cut = f"{100 * (1 - f['total'] / d['total']):.1f}%"
            attn = f["attention"] + f["attention_proj"]
            attn_cut = f"{100 * (1 - attn / (d['attention'] + d['attention_proj'])):.1f}%"
            speed = f"{dense['seconds'] / r['seconds']:.2f}x"
        config = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "-"
        lines.append(f"| {r['variant']} | {config} | {r['auc_mean']:.4f} ± {r['auc_std']:.4f} | "
                     f"{f['total'] / 1e6:.2f} | {cut} | {attn_cut} | {r['seconds'] * 1e3:.0f} | {speed} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    with open(args.out + ".json", "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    import sys

    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()
