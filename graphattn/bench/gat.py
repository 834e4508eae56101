r"""``graphattn bench gat``: training steps of graphattn's :class:`~graphattn.nn.GATConv` and
:class:`~graphattn.nn.GATv2Conv` against PyG's classes of the same names, same weights.

The model is the GAT paper's two-layer network at the width used on Cora, with both layers
concatenating ``--heads`` heads of ``--channels`` channels (8 x 8 by default) and an ELU between them,
attention dropout ``--attn-dropout``; the graphattn model loads the PyG model's ``state_dict``. One
training step is forward + backward of ``mean(out^2)`` (the same loss on both sides; the optimiser is
left out, it is the same code on both sides). Two graphs:

* ``cora``: Planetoid Cora (2,708 nodes, 10,556 edges, 1,433 features), read from ``--planetoid``
  (a folder with ``Cora/raw/``) by :func:`graphattn.data.planetoid.load_planetoid`;
* ``random``: ``--random-nodes`` nodes with ``--random-edges`` uniformly random edges and
  ``--random-features`` Gaussian features (100k / 1.6M / 64 by default).

Time: the two sides are timed in turn step by step (``--reps`` pairs after warm-up, all of them:
no early stop), medians reported with ``PyG time / graphattn time`` (above 1: graphattn is faster).
Memory: each side runs alone in a fresh subprocess (``--rss-steps`` steps after building the data
and the model), which reports the growth of its peak resident set during the steps (the kernel's
high-water mark is reset after setup, ``/proc/self/clear_refs``), or of the GPU's peak allocation.
Writes ``gat-<device>.json`` into ``--out-dir``.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import subprocess
import sys
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import GATConv as PyGGATConv
from torch_geometric.nn import GATv2Conv as PyGGATv2Conv

from ..data.planetoid import load_planetoid
from ..nn import GATConv, GATv2Conv
from . import bench_parser, device_name, parse_bench_args, report_result, versions
from .kernels import uniform_graph
from .layers import _row, interleaved_ms

__all__ = ["GATNet", "model_pair", "random_data", "main"]

LAYERS = {"gat": (GATConv, PyGGATConv), "gatv2": (GATv2Conv, PyGGATv2Conv)}


class GATNet(nn.Module):
    """``conv2(ELU(conv1(x)))``, both convs ``heads`` x ``channels`` concatenated."""

    def __init__(self, conv: type, in_channels: int, channels: int, heads: int, attn_dropout: float):
        super().__init__()
        self.conv1 = conv(in_channels, channels, heads=heads, dropout=attn_dropout)
        self.conv2 = conv(channels * heads, channels, heads=heads, dropout=attn_dropout)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


def model_pair(layer: str, in_channels: int, channels: int, heads: int,
               attn_dropout: float) -> tuple[nn.Module, nn.Module]:
    """``(graphattn, PyG)`` models of ``layer`` (``"gat"`` / ``"gatv2"``), the same weights."""
    ours_cls, pyg_cls = LAYERS[layer]
    pyg = GATNet(pyg_cls, in_channels, channels, heads, attn_dropout)
    ours = GATNet(ours_cls, in_channels, channels, heads, attn_dropout)
    ours.load_state_dict(pyg.state_dict())
    return ours, pyg


def random_data(num_nodes: int, num_edges: int, features: int, seed: int = 0) -> Data:
    """``num_edges`` uniformly random edges on ``num_nodes`` nodes with Gaussian features."""
    gen = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(num_nodes, features, generator=gen),
                edge_index=uniform_graph(num_nodes, num_edges, torch.device("cpu"), seed))


def _data(name: str, args: argparse.Namespace) -> Data:
    if name == "cora":
        return load_planetoid("cora", args.planetoid).data
    return random_data(args.random_nodes, args.random_edges, args.random_features)


def _train_step(model: nn.Module, data: Data) -> Callable[[], None]:
    x = data.x.detach().requires_grad_()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x, data.edge_index).square().mean().backward()

    return step


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_growth_mb(step: Callable[[], None], device: torch.device, steps: int) -> float:
    """Growth of the peak memory during ``steps`` calls of ``step``: the host's resident set (its
    high-water mark reset first), or the GPU's allocations."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(steps):
            step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                  # resets VmHWM to the current resident set
    base = _proc_status_kb("VmRSS")
    for _ in range(steps):
        step()
    return (_proc_status_kb("VmHWM") - base) / 1024


def _child(args: argparse.Namespace) -> None:
    """One side alone (``--rss-child SIDE LAYER DATASET``): prints ``{"peak_growth_mb": ...}``."""
    side, layer, name = args.rss_child
    device = torch.device(args.device)
    data = _data(name, args).to(device)
    ours, pyg = model_pair(layer, data.num_features, args.channels, args.heads, args.attn_dropout)
    model = (ours if side == "graphattn" else pyg).to(device).train()
    del ours, pyg
    step = _train_step(model, data)
    step()                                              # first-call setup (caches, lazy allocations)
    print(json.dumps({"peak_growth_mb": round(_peak_growth_mb(step, device, args.rss_steps), 1)}))


def _child_growth(side: str, layer: str, name: str, argv: list[str]) -> Optional[float]:
    cmd = [sys.executable, "-m", "graphattn.bench.gat", *argv, "--rss-child", side, layer, name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {side} {layer} {name}: memory run failed ({done.stderr.strip().splitlines()[-1:]})", flush=True)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_growth_mb"]


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    device = torch.device(args.device)
    rows = []
    for name in args.datasets:
        data = _data(name, args).to(device)
        shape = dict(dataset=name, nodes=data.num_nodes, edges=data.num_edges, features=data.num_features,
                     heads=args.heads, channels=args.channels, attn_dropout=args.attn_dropout)
        for layer in args.layers:
            torch.manual_seed(0)
            ours, pyg = (m.to(device).train() for m in model_pair(layer, data.num_features, args.channels,
                                                                   args.heads, args.attn_dropout))
            ours_ms, pyg_ms = interleaved_ms([_train_step(ours, data), _train_step(pyg, data)], device,
                                             args.reps, max_seconds=math.inf)
            memory = {f"{side}_peak_growth_mb": _child_growth(side, layer, name, argv) if args.rss_steps else None
                      for side in ("graphattn", "pyg")}
            rows.append(_row(layer, ours_ms, pyg_ms, **shape, **memory))
            print(f"{name:7s} {layer:6s} graphattn {ours_ms:9.2f} ms  PyG {pyg_ms:9.2f} ms  PyG/graphattn "
                  f"{rows[-1]['pyg_over_graphattn']:.2f}x  peak growth graphattn "
                  f"{memory['graphattn_peak_growth_mb']} MiB  PyG {memory['pyg_peak_growth_mb']} MiB", flush=True)
    return {"benchmark": "gat", "device": device_name(device), "threads": torch.get_num_threads(),
            "versions": versions(), "args": {k: v for k, v in vars(args).items() if k != "rss_child"}, "rows": rows}


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = bench_parser("graphattn bench gat", __doc__.splitlines()[0], device="cpu")
    p.add_argument("--datasets", nargs="+", default=["cora", "random"], choices=("cora", "random"))
    p.add_argument("--layers", nargs="+", default=["gat", "gatv2"], choices=tuple(LAYERS))
    p.add_argument("--planetoid", default=None, help="folder holding Cora/raw (Planetoid's raw files)")
    p.add_argument("--random-nodes", type=int, default=100_000)
    p.add_argument("--random-edges", type=int, default=1_600_000)
    p.add_argument("--random-features", type=int, default=64)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--channels", type=int, default=8, help="channels per head")
    p.add_argument("--attn-dropout", type=float, default=0.6, help="attention dropout (the GAT paper's on Cora)")
    p.add_argument("--reps", type=int, default=30, help="interleaved timing pairs (after warm-up)")
    p.add_argument("--rss-steps", type=int, default=3, help="steps of each memory subprocess (0: no memory runs)")
    p.add_argument("--rss-child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parse_bench_args(p, argv)
    if "cora" in args.datasets and args.planetoid is None:
        p.error("--planetoid is required for the cora dataset")
    if args.rss_child is not None:
        _child(args)
        return
    report_result(run(args, argv), args, "gat")


if __name__ == "__main__":
    main()
