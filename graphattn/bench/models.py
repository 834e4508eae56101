"""``graphattn bench models``: training-epoch time of graphattn's models against the same models
built from PyG's own layers, same data, same device, same parameters.

* ``gps``: graphattn's :class:`~graphattn.models.GPS` against ``GPSConv`` (+ ``GINEConv`` /
  ``ResGatedGraphConv``). Same width, depth, heads, encoders, local layer and head; the only
  difference is where attention runs: PyG's ``GPSConv`` pads every batch to its largest graph
  (``to_dense_batch``) and calls ``torch.nn.MultiheadAttention``, graphattn runs the block-diagonal
  attention graph on its engine.
* ``transformer``: a stack of ``TransformerConv`` layers with bond features (``edge_dim``) against
  the same stack of :class:`~graphattn.nn.GraphAttnConv` loaded with its ``state_dict``.

Writes ``<out-dir>/models-<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GPSConv, TransformerConv, global_mean_pool

from ..data import load_dataset
from ..models import GPS, AtomEncoder, BondEncoder
from ..models.local import LocalConv
from ..nn import GraphAttnConv
from ..training import train_epoch
from . import DEFAULT_OUT_DIR, device_name, device_tag, versions

__all__ = ["PyGGPS", "TransformerConvStack", "main"]


class _NodeOutputConv(LocalConv):
    """A :class:`LocalConv` that returns the node features only, as PyG's ``GPSConv`` calls its conv
    (GatedGCN's updated edge features are dropped: ``GPSConv`` has no edge stream)."""

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None) -> Tensor:
        return super().forward(x, edge_index, edge_attr)[0]


class PyGGPS(nn.Module):
    """The baseline: OGB encoders -> ``num_layers`` PyG ``GPSConv`` (multihead attention) -> mean pool -> linear."""

    def __init__(self, channels: int, out_channels: int, num_layers: int, heads: int, local_conv: str,
                 attn_dropout: float, dropout: float):
        super().__init__()
        self.atom, self.bond = AtomEncoder(channels), BondEncoder(channels)
        self.layers = nn.ModuleList(
            GPSConv(channels, _NodeOutputConv(local_conv, channels), heads=heads, dropout=dropout,
                    attn_type="multihead", attn_kwargs={"dropout": attn_dropout})
            for _ in range(num_layers))
        self.head = nn.Linear(channels, out_channels)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, **_) -> Tensor:
        h, e = self.atom(x), self.bond(edge_attr)
        for layer in self.layers:
            h = layer(h, edge_index, batch, edge_attr=e)
        return self.head(global_mean_pool(h, batch))


class TransformerConvStack(nn.Module):
    r"""OGB encoders -> ``num_layers`` x [:math:`\mathbf{h} \leftarrow \mathbf{h} +
    \operatorname{Dropout}(\operatorname{ReLU}(\operatorname{BN}(\operatorname{conv}(\mathbf{h},
    \mathbf{e}))))`] -> mean pool -> linear, where ``conv`` is PyG's ``TransformerConv`` or
    graphattn's :class:`~graphattn.nn.GraphAttnConv` (``heads`` heads of width ``channels / heads``,
    concatenated, bond features as ``edge_dim``); the two have the same parameter names."""

    def __init__(self, conv: type, channels: int, out_channels: int, num_layers: int, heads: int, dropout: float):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.dropout = dropout
        self.atom, self.bond = AtomEncoder(channels), BondEncoder(channels)
        self.convs = nn.ModuleList(conv(channels, channels // heads, heads=heads, edge_dim=channels)
                                   for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(num_layers))
        self.head = nn.Linear(channels, out_channels)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, **_) -> Tensor:
        h, e = self.atom(x), self.bond(edge_attr)
        for conv, norm in zip(self.convs, self.norms):
            h = h + F.dropout(F.relu(norm(conv(h, edge_index, e))), self.dropout, self.training)
        return self.head(global_mean_pool(h, batch))


def _model_pairs(args: argparse.Namespace, num_tasks: int) -> dict[str, tuple[nn.Module, nn.Module]]:
    """``{family: (graphattn model, PyG model)}`` with equal parameter counts (equal weights for
    ``transformer``)."""
    pairs = {}
    if "gps" in args.models:
        common = dict(num_layers=args.layers, heads=args.heads, attn_dropout=0.5, dropout=0.05)
        pairs["gps"] = (GPS(args.channels, num_tasks, local_conv=args.local_conv, **common),
                        PyGGPS(args.channels, num_tasks, local_conv=args.local_conv, **common))
    if "transformer" in args.models:
        common = dict(channels=args.channels, out_channels=num_tasks, num_layers=args.layers, heads=args.heads,
                      dropout=0.05)
        pyg = TransformerConvStack(TransformerConv, **common)
        ours = TransformerConvStack(GraphAttnConv, **common)
        ours.load_state_dict(pyg.state_dict())
        pairs["transformer"] = (ours, pyg)
    return pairs


def _epoch_seconds(model: nn.Module, loader, bench, device: torch.device, epochs: int) -> list[float]:
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        train_epoch(model, loader, optimizer, bench.task_type, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main(argv: Optional[list[str]] = None) -> None:
    from torch_geometric.loader import DataLoader

    p = argparse.ArgumentParser(prog="graphattn bench models", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ogbg-molesol")
    p.add_argument("--root", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--local-conv", default="gatedgcn", choices=("gine", "gatedgcn"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per model (after one warm-up epoch)")
    p.add_argument("--max-graphs", type=int, default=0, help="use only this many training graphs (0: all)")
    p.add_argument("--models", nargs="+", default=["gps", "transformer"], choices=("gps", "transformer"))
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                        help="folder of the results (benchmarks/results updates the tracked ones)")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    bench = load_dataset(args.dataset, args.root)
    train = bench.subset("train")
    if args.max_graphs:
        train = train[: args.max_graphs]
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    rows, ratios = [], {}
    for family, models in _model_pairs(args, bench.num_tasks).items():
        seconds = []
        for library, model in zip(("graphattn", "PyG"), models):
            torch.manual_seed(0)
            times = _epoch_seconds(model, loader, bench, device, args.epochs + 1)[1:]
            rows.append({"family": family, "library": library, "model": type(model).__name__,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "epoch_seconds": statistics.median(times), "all_epoch_seconds": times})
            seconds.append(rows[-1]["epoch_seconds"])
            print(f"{family:12s} {library:10s} {rows[-1]['parameters']:>9,} params  {seconds[-1]:.2f} s/epoch",
                  flush=True)
        ratios[family] = seconds[1] / seconds[0]
    result = {"benchmark": "models", "dataset": bench.name, "graphs": len(train), "device": device_name(device),
              "versions": versions(), "args": vars(args), "rows": rows, "pyg_over_graphattn": ratios}
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"models-{device_tag(device)}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    summary = ", ".join(f"{family} {ratio:.2f}x" for family, ratio in ratios.items())
    print(f"{bench.name} ({len(train):,} training graphs), {device_name(device)}: PyG epoch / graphattn epoch = "
          f"{summary}  -> {path}")
