r"""``graphattn bench layers``: graphattn's layers against the PyG layers they replace, at the level
users touch — training steps (forward + backward) of layer stacks on real molecule batches — and the
core op against PyG's gather/softmax/scatter over a range of graph sizes.

Comparisons (same weights: the graphattn stack loads the PyG stack's ``state_dict``):

* ``conv``: ``L`` x :class:`~graphattn.nn.GraphAttnConv` with ``edge_dim`` against ``L`` x PyG
  ``TransformerConv`` (``heads`` heads of width ``channels / heads``, concatenated, bond features);
* ``gps``: ``L`` x :class:`~graphattn.nn.GPSLayer` (GINE local layer, multi-head attention with
  attention dropout ``--attn-dropout``) against ``L`` x PyG ``GPSConv``;
* ``gps_nodrop``: the same without attention dropout;
* ``core``: :func:`graphattn.graph_attention` against PyG's ``TransformerConv`` message passing
  (gather ``q[dst]``, ``k[src]``, :func:`torch_geometric.utils.softmax`, scatter-sum of
  ``alpha * v[src]``), forward + backward, ``H`` heads of width ``D``, uniform random graphs of
  average in-degree 16 with 1k ... 2M edges.

The batch: ``--graphs`` molecules of 15–40 atoms from the embedded ogbg-molesol (or any OGB
molecule dataset with ``--dataset``/``--root``), atom and bond features through OGB's encoders
(fixed inputs). Timing interleaves the two sides step by step (``--reps`` pairs after warm-up) so
that both see the same machine state; medians are reported, with the ratio
``PyG time / graphattn time`` (above 1: graphattn is faster). Writes ``layers-<device>.json``
into ``--out-dir``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, GPSConv, TransformerConv

from ..functional import graph_attention
from ..nn import GPSLayer, GraphAttnConv
from . import bench_parser, device_name, parse_bench_args, report_result, synchronize, versions
from .kernels import pyg_attention, uniform_graph

__all__ = ["molecule_batch", "conv_stacks", "gps_stacks", "interleaved_ms", "main"]

CORE_EDGES = (1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20, 1 << 21)
#: E x H x D tensors PyG's core op holds at its peak, forward + backward: 6.1 measured (peak RSS growth
#: at 262k edges, H=8, D=64), with a margin; larger runs are recorded as out of memory instead of started.
PYG_PEAK_EDGE_TENSORS = 8


def molecule_batch(num_graphs: int, channels: int, dataset: str = "ogbg-molesol", root: Optional[str] = None,
                   min_atoms: int = 15, max_atoms: int = 40, seed: int = 0):
    """A PyG ``Batch`` of ``num_graphs`` real molecules with ``min_atoms``..``max_atoms`` atoms, with
    ``x`` ``[N, channels]`` and ``edge_attr`` ``[E, channels]`` from OGB's atom and bond encoders."""
    from torch_geometric.data import Batch

    from ..data import load_dataset
    from ..models import AtomEncoder, BondEncoder

    data = load_dataset(dataset, root).dataset
    sizes = torch.tensor([g.num_nodes for g in data])
    pool = ((sizes >= min_atoms) & (sizes <= max_atoms)).nonzero().view(-1)
    if pool.numel() < num_graphs:
        raise ValueError(f"{dataset} has only {pool.numel()} molecules with {min_atoms}-{max_atoms} atoms")
    gen = torch.Generator().manual_seed(seed)
    pick = pool[torch.randperm(pool.numel(), generator=gen)[:num_graphs]]
    batch = Batch.from_data_list([data[int(i)] for i in pick])
    torch.manual_seed(seed)
    with torch.no_grad():
        batch.x = AtomEncoder(channels)(batch.x)
        batch.edge_attr = BondEncoder(channels)(batch.edge_attr)
    return batch


class _Stack(nn.Module):
    """``h <- ReLU(layer(h, ...))`` for every layer (conv stacks) or ``h <- layer(h, ...)`` (GPS)."""

    def __init__(self, layers: list[nn.Module], relu: bool):
        super().__init__()
        self.layers, self.relu = nn.ModuleList(layers), relu

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor) -> Tensor:
        for layer in self.layers:
            if self.relu:
                x = torch.relu(layer(x, edge_index, edge_attr))
            else:
                x = layer(x, edge_index, batch, edge_attr=edge_attr)
        return x


def conv_stacks(channels: int, heads: int, num_layers: int) -> tuple[nn.Module, nn.Module]:
    """``(graphattn, PyG)`` stacks of GraphAttnConv / TransformerConv with bond features, same weights."""
    pyg = _Stack([TransformerConv(channels, channels // heads, heads=heads, edge_dim=channels)
                  for _ in range(num_layers)], relu=True)
    ours = _Stack([GraphAttnConv(channels, channels // heads, heads=heads, edge_dim=channels)
                   for _ in range(num_layers)], relu=True)
    ours.load_state_dict(pyg.state_dict())
    return ours, pyg


def _gine(channels: int) -> nn.Module:
    return GINEConv(nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels)))


def gps_stacks(channels: int, heads: int, num_layers: int, attn_dropout: float) -> tuple[nn.Module, nn.Module]:
    """``(graphattn, PyG)`` stacks of GPSLayer / GPSConv (GINE local layer, multi-head attention), same weights."""
    kwargs = dict(heads=heads, dropout=0.0, attn_type="multihead", attn_kwargs={"dropout": attn_dropout})
    pyg = _Stack([GPSConv(channels, _gine(channels), **kwargs) for _ in range(num_layers)], relu=False)
    ours = _Stack([GPSLayer(channels, _gine(channels), **kwargs) for _ in range(num_layers)], relu=False)
    ours.load_state_dict(pyg.state_dict())
    return ours, pyg


def interleaved_ms(fns: list[Callable[[], object]], device: torch.device, reps: int, warmup: int = 3,
                   max_seconds: float = 60.0) -> list[float]:
    """Median milliseconds of each of ``fns``, timed in turn (A, B, A, B, ...) so that every function
    sees the same machine state; stops early (at least 5 rounds) once ``max_seconds`` have passed."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for r in range(reps):
        for i, fn in enumerate(fns):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[i].append((time.perf_counter() - t0) * 1e3)
        if r >= 4 and time.perf_counter() - start > max_seconds:
            break
    return [statistics.median(t) for t in times]


def _train_step(model: nn.Module, batch) -> Callable[[], None]:
    x = batch.x.detach().requires_grad_()
    args = (x, batch.edge_index, batch.edge_attr, batch.batch)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(*args)
        out.square().mean().backward()

    return step


def _core_step(fn: Callable, q: Tensor, k: Tensor, v: Tensor, grad: Tensor) -> Callable[[], None]:
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    return lambda: torch.autograd.grad(fn(*leaves), leaves, grad)


def _row(name: str, ours_ms: float, pyg_ms: Optional[float], **extra) -> dict:
    return dict(comparison=name, graphattn_ms=round(ours_ms, 4), pyg_ms=None if pyg_ms is None else round(pyg_ms, 4),
                pyg_over_graphattn=None if pyg_ms is None else round(pyg_ms / ours_ms, 3), **extra)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: ``MemAvailable`` of the host, or the GPU's free memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    batch = molecule_batch(args.graphs, args.channels, args.dataset, args.root).to(device)
    shape = dict(nodes=batch.num_nodes, edges=batch.num_edges, graphs=args.graphs, layers=args.layers,
                 channels=args.channels, heads=args.heads)
    rows = []
    stacks = {"conv": lambda: conv_stacks(args.channels, args.heads, args.layers),
              "gps": lambda: gps_stacks(args.channels, args.heads, args.layers, args.attn_dropout),
              "gps_nodrop": lambda: gps_stacks(args.channels, args.heads, args.layers, 0.0)}
    for name in args.comparisons:
        if name == "core":
            continue
        ours, pyg = (m.to(device).train() for m in stacks[name]())
        ours_ms, pyg_ms = interleaved_ms([_train_step(ours, batch), _train_step(pyg, batch)], device, args.reps)
        rows.append(_row(name, ours_ms, pyg_ms, **shape))
        print(f"{name:12s} graphattn {ours_ms:8.2f} ms  PyG {pyg_ms:8.2f} ms  PyG/graphattn "
              f"{rows[-1]['pyg_over_graphattn']:.2f}x", flush=True)
    if "core" in args.comparisons:
        gen = torch.Generator(device=device).manual_seed(0)
        for num_edges in args.core_edges:
            n = max(num_edges // 16, 2)
            edge_index = uniform_graph(n, num_edges, device)
            q, k, v, grad = (torch.randn(n, args.core_heads, args.core_dim, generator=gen, device=device)
                             for _ in range(4))
            src, dst = edge_index
            ours = _core_step(lambda a, b, c: graph_attention(a, b, c, edge_index), q, k, v, grad)
            pyg = _core_step(lambda a, b, c: pyg_attention(a, b, c, src, dst, n), q, k, v, grad)
            reps = args.reps if num_edges <= 1 << 16 else max(5, args.reps // 10)
            need = PYG_PEAK_EDGE_TENSORS * num_edges * args.core_heads * args.core_dim * q.element_size()
            if need > 0.8 * available_bytes(device):      # PyG would be killed: record it, time graphattn alone
                ours_ms, pyg_ms = interleaved_ms([ours], device, reps, warmup=1)[0], None
                note = f"PyG out of memory: needs about {need / 2 ** 30:.0f} GiB"
            else:
                (ours_ms, pyg_ms), note = interleaved_ms([ours, pyg], device, reps, warmup=1), None
            rows.append(_row("core", ours_ms, pyg_ms, nodes=n, edges=num_edges, heads=args.core_heads,
                             dim=args.core_dim, note=note))
            ratio = f"{rows[-1]['pyg_over_graphattn']:.2f}x" if pyg_ms is not None else note
            print(f"core E={num_edges:>9,} graphattn {ours_ms:9.2f} ms  PyG "
                  f"{'-' if pyg_ms is None else f'{pyg_ms:9.2f}'} ms  PyG/graphattn {ratio}", flush=True)
    return {"benchmark": "layers", "device": device_name(device), "threads": torch.get_num_threads(),
            "versions": versions(), "args": vars(args), "rows": rows}


def main(argv: Optional[list[str]] = None) -> None:
    p = bench_parser("graphattn bench layers", __doc__.splitlines()[0])
    p.add_argument("--dataset", default="ogbg-molesol")
    p.add_argument("--root", default=None, help="dataset folder (default: the embedded ogbg-molesol)")
    p.add_argument("--graphs", type=int, default=32)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--attn-dropout", type=float, default=0.5)
    p.add_argument("--core-heads", type=int, default=8)
    p.add_argument("--core-dim", type=int, default=64)
    p.add_argument("--core-edges", type=int, nargs="+", default=list(CORE_EDGES))
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--comparisons", nargs="+", default=["conv", "gps", "gps_nodrop", "core"],
                   choices=("conv", "gps", "gps_nodrop", "core"))
    args = parse_bench_args(p, argv)
    report_result(run(args), args, "layers")
