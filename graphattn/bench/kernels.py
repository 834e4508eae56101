r"""Kernel benchmark: the fused CSR attention against PyG, FlexAttention and dense SDPA.

The core op :math:`o_i = \sum_{j \to i} \operatorname{softmax}_j(\langle q_i, k_j\rangle / \sqrt D)\, v_j`
with ``H`` heads of width ``D``, timed for each graph, dtype and head width in one run on one
device:

* ``graphattn`` — :func:`sparse_kernels.attention` on the graph's CSR (the Triton kernels on a
  GPU, the reference on the CPU);
* ``pyg`` — PyG's path as in ``TransformerConv``: gather ``q[dst]``, ``k[src]``, scores,
  :func:`torch_geometric.utils.softmax`, scatter-sum of ``alpha * v[src]`` (E x H x D messages);
* ``pyg_compiled`` — the same function under ``torch.compile(dynamic=True)`` (GPU);
* ``flex`` — compiled FlexAttention with the block mask of the adjacency (GPU, ``N <= --dense-max``);
* ``sdpa`` — dense ``scaled_dot_product_attention`` with a boolean mask (``N <= --dense-max``).

Graphs: uniform random and R-MAT power-law (a=0.57, b=c=0.19, nodes relabelled at random) at
16k/262k, 65k/2.1M, 262k/4.2M and 1M/16.8M nodes/edges, and a batch of real ogbg-molhiv
molecules (bond graph in both directions plus self-loops; ``molhiv_full``: full attention
inside each molecule) read from ``--molhiv-root`` (OGB layout; skipped when absent).

Per entry: forward and forward+backward median ms (CUDA events, after warm-up), peak memory of
forward+backward, and for ``graphattn`` the fraction of the *gather floor* reached — the time
to move ``E * H * (D + Dv)`` feature bytes (every edge gathers ``k_j`` and ``v_j`` once) at the
copy bandwidth measured in the same run — and the error of its output and gradients against
the fp32 reference (half precisions at every width, fp32 at ``--baseline-dims``).
Out-of-memory is recorded as ``"OOM"`` and the run goes on; a time budget stops starting new
entries so that one command finishes within ten minutes. Entries run D=64 first (with every
baseline), then the other widths (graphattn only). Writes ``<out-dir>/kernels-<device>.json``,
a PNG plot and a Markdown table, and prints the table and the issue's acceptance checks last.

GPU (one command, < 10 min; correctness first with
``TRITON_INTERPRET=0 python -m pytest tests/test_triton_gpu.py``)::

    graphattn bench kernels --molhiv-root /path/to/ogbg_molhiv

CPU smoke test::

    graphattn bench kernels --device cpu --quick
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import sparse_kernels as sk
from sparse_kernels import reference

from . import DEFAULT_OUT_DIR, device_name, device_tag, median_ms, peak_mb, synchronize, versions

__all__ = ["GRAPHS", "BenchGraph", "make_graph", "uniform_graph", "rmat_graph", "molhiv_graph", "run", "main"]

#: name -> (kind, nodes, edges); molhiv sizes come from the data.
GRAPHS: dict[str, tuple[str, int, int]] = {
    "uniform_16k": ("uniform", 1 << 14, 1 << 18), "uniform_65k": ("uniform", 1 << 16, 1 << 21),
    "uniform_262k": ("uniform", 1 << 18, 1 << 22), "uniform_1m": ("uniform", 1 << 20, 1 << 24),
    "rmat_16k": ("rmat", 1 << 14, 1 << 18), "rmat_65k": ("rmat", 1 << 16, 1 << 21),
    "rmat_262k": ("rmat", 1 << 18, 1 << 22), "rmat_1m": ("rmat", 1 << 20, 1 << 24),
    "molhiv": ("molhiv", 0, 0), "molhiv_full": ("molhiv_full", 0, 0),
    "uniform_1k": ("uniform", 1 << 10, 1 << 14), "rmat_1k": ("rmat", 1 << 10, 1 << 14),
}
DEFAULT_GRAPHS = ["uniform_16k", "uniform_65k", "uniform_262k", "uniform_1m", "rmat_16k", "rmat_65k",
                  "rmat_262k", "rmat_1m", "molhiv", "molhiv_full"]
QUICK_GRAPHS = ["uniform_1k", "rmat_1k", "molhiv"]
METHODS = ["graphattn", "pyg", "pyg_compiled", "sdpa", "flex"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: Copy bandwidth of an H100 80GB (DESIGN.md anchors), used when it cannot be measured (CPU).
H100_COPY_TBPS = 2.86


# --------------------------------------------------------------------------- graphs
@dataclass
class BenchGraph:
    """A benchmark graph: ``edge_index`` (row 0 sources) and its engine CSR (``sparse_kernels.build_csr``), on
    the benchmark device."""

    name: str
    edge_index: torch.Tensor
    num_nodes: int
    engine_csr: sk.CSR
    build_ms: float

    @property
    def num_edges(self) -> int:
        return self.edge_index.size(1)


def uniform_graph(num_nodes: int, num_edges: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """``edge_index`` with sources and destinations drawn uniformly."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, num_nodes, (2, num_edges), generator=gen, device=device)


def rmat_graph(num_nodes: int, num_edges: int, device: torch.device, seed: int = 0,
               probs: tuple[float, float, float] = (0.57, 0.19, 0.19)) -> torch.Tensor:
    """R-MAT ``edge_index`` (power-law in- and out-degrees) on ``num_nodes`` (a power of two) nodes.

    Each edge picks one quadrant of the adjacency per level with probabilities ``a, b, c, 1-a-b-c``;
    node ids are then relabelled by a random permutation (no locality from the recursion).
    """
    if num_nodes & (num_nodes - 1):
        raise ValueError(f"num_nodes must be a power of two for R-MAT, got {num_nodes}")
    a, b, c = probs
    gen = torch.Generator(device=device).manual_seed(seed)
    dst = torch.zeros(num_edges, dtype=torch.long, device=device)
    src = torch.zeros_like(dst)
    for _ in range(num_nodes.bit_length() - 1):
        r = torch.rand(num_edges, generator=gen, device=device)
        dst = 2 * dst + (r >= a + b).long()
        src = 2 * src + (((r >= a) & (r < a + b)) | (r >= a + b + c)).long()
    relabel = torch.randperm(num_nodes, generator=gen, device=device)
    return torch.stack([relabel[src], relabel[dst]])


def _read_int_list(path: str) -> torch.Tensor:
    with gzip.open(path, "rt") as f:
        return torch.tensor([int(line) for line in f if line.strip()], dtype=torch.long)


def molhiv_graph(root: str, num_graphs: int, full: bool, device: torch.device) -> tuple[torch.Tensor, int]:
    """``(edge_index, num_nodes)`` of the first ``num_graphs`` ogbg-molhiv molecules as one batch.

    Reads the OGB raw files (``raw/edge.csv.gz``, ``raw/num-node-list.csv.gz``,
    ``raw/num-edge-list.csv.gz``; bonds listed once, node ids local to each molecule). With
    ``full=False``: bonds in both directions plus a self-loop per atom; with ``full=True``: every
    ordered pair of atoms of the same molecule (block-diagonal full attention, as in GPS).
    """
    import pandas as pd

    raw = os.path.join(root, "raw")
    nodes = _read_int_list(os.path.join(raw, "num-node-list.csv.gz"))[:num_graphs]
    edges = _read_int_list(os.path.join(raw, "num-edge-list.csv.gz"))[:num_graphs]
    num_nodes = int(nodes.sum())
    node_offset = torch.cumsum(nodes, 0) - nodes
    if full:
        graph_of = torch.repeat_interleave(torch.arange(nodes.numel()), nodes)
        sizes = nodes[graph_of]
        src = torch.repeat_interleave(torch.arange(num_nodes), sizes)
        first = torch.repeat_interleave(node_offset[graph_of], sizes)
        dst = first + (torch.arange(src.numel()) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes))
        return torch.stack([src, dst]).to(device), num_nodes
    bonds = torch.from_numpy(pd.read_csv(os.path.join(raw, "edge.csv.gz"), header=None,
                                         nrows=int(edges.sum())).values).long().t()
    bonds = bonds + torch.repeat_interleave(node_offset, edges)
    loops = torch.arange(num_nodes).expand(2, -1)
    return torch.cat([bonds, bonds.flip(0), loops], 1).to(device), num_nodes


def make_graph(name: str, device: torch.device, molhiv_root: Optional[str], molhiv_graphs: int) -> Optional[BenchGraph]:
    """Builds a named graph (and its CSR, timed); ``None`` for molhiv without data."""
    kind, n, e = GRAPHS[name]
    if kind == "uniform":
        edge_index = uniform_graph(n, e, device)
    elif kind == "rmat":
        edge_index = rmat_graph(n, e, device)
    else:
        if not molhiv_root or not os.path.exists(os.path.join(molhiv_root, "raw", "edge.csv.gz")):
            return None
        edge_index, n = molhiv_graph(molhiv_root, molhiv_graphs, kind == "molhiv_full", device)
    synchronize(device)
    t1 = time.perf_counter()
    csr = sk.build_csr(edge_index, n, n)
    csr.transpose()
    synchronize(device)
    return BenchGraph(name, edge_index, n, csr, build_ms=(time.perf_counter() - t1) * 1e3)


# --------------------------------------------------------------------------- methods
def pyg_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                  num_nodes: int) -> torch.Tensor:
    """PyG's TransformerConv message passing: gather, segment softmax, scatter-sum."""
    from torch_geometric.utils import scatter, softmax

    alpha = (q[dst] * k[src]).sum(-1) / math.sqrt(q.size(-1))
    alpha = softmax(alpha, dst, num_nodes=num_nodes)
    return scatter(v[src] * alpha.unsqueeze(-1), dst, dim=0, dim_size=num_nodes, reduce="sum")


_COMPILED: dict[str, Callable] = {}


def _method_fn(method: str, graph: BenchGraph, device: torch.device) -> Callable:
    """``fn(q, k, v) -> out`` on ``[N, H, D]`` tensors (graph structures built here, untimed)."""
    n, csr = graph.num_nodes, graph.engine_csr
    src, dst = graph.edge_index[0], graph.edge_index[1]
    if method == "graphattn":
        return lambda q, k, v: sk.attention(q, k, v, csr)
    if method == "pyg":
        return lambda q, k, v: pyg_attention(q, k, v, src, dst, n)
    if method == "pyg_compiled":
        if "pyg" not in _COMPILED:
            _COMPILED["pyg"] = torch.compile(pyg_attention, dynamic=True)
        compiled = _COMPILED["pyg"]
        return lambda q, k, v: compiled(q, k, v, src, dst, n)
    to_bhnd = lambda x: x.transpose(0, 1).unsqueeze(0)  # noqa: E731
    from_bhnd = lambda x: x[0].transpose(0, 1)  # noqa: E731
    adjacency = torch.zeros(n, n, dtype=torch.bool, device=device)
    adjacency[dst, src] = True
    if method == "sdpa":
        return lambda q, k, v: from_bhnd(F.scaled_dot_product_attention(to_bhnd(q), to_bhnd(k), to_bhnd(v),
                                                                        attn_mask=adjacency))
    if method == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def mask_mod(b, h, q_idx, kv_idx):
            return adjacency[q_idx, kv_idx]

        block_mask = create_block_mask(mask_mod, None, None, n, n, device=str(device))
        if "flex" not in _COMPILED:
            _COMPILED["flex"] = torch.compile(flex_attention)
        flex = _COMPILED["flex"]
        return lambda q, k, v: from_bhnd(flex(to_bhnd(q), to_bhnd(k), to_bhnd(v), block_mask=block_mask))
    raise ValueError(f"unknown method {method!r}")


def _applies(method: str, graph: BenchGraph, device: torch.device, args) -> Optional[str]:
    """Why ``method`` is skipped on ``graph`` (``None`` if it runs)."""
    if method in ("pyg_compiled", "flex") and device.type != "cuda" and not args.compile_on_cpu:
        return "GPU only (use --compile-on-cpu)"
    if method in ("flex", "sdpa") and graph.num_nodes > args.dense_max:
        return f"N > --dense-max {args.dense_max}"
    return None


# --------------------------------------------------------------------------- measurements
def copy_bandwidth_tbps(device: torch.device) -> Optional[float]:
    """Device copy bandwidth (read + write of 1 GiB), TB/s; ``None`` off the GPU."""
    if device.type != "cuda":
        return None
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), device, warmup=3, reps=10)
    x = y = None  # free the 2 GiB before emptying the cache
    torch.cuda.empty_cache()
    return 2 * (1 << 30) / (ms * 1e-3) / 1e12


def _rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.detach().float() - ref).norm() / ref.norm().clamp_min(1e-30))


def accuracy(graph: BenchGraph, q, k, v, grad) -> dict:
    """Relative (Frobenius) error of graphattn's output and gradients against the fp32 reference."""
    leaves = [x.detach().requires_grad_() for x in (q, k, v)]
    out = sk.attention(*leaves, graph.engine_csr)
    grads = torch.autograd.grad(out, leaves, grad)
    f32 = [x.detach().float() for x in (q, k, v)]
    scale = q.size(-1) ** -0.5
    row, col = graph.engine_csr.row, graph.engine_csr.col
    ref_out, stat = reference.attention_forward(*f32, row, col, None, scale, "softmax")
    ref_grads = reference.attention_backward(grad.float(), *f32, ref_out, stat, row, col, None, scale, "softmax")[:3]
    errs = {"out": _rel_err(out, ref_out)}
    errs.update({f"d{name}": _rel_err(g, r) for name, g, r in zip("qkv", grads, ref_grads)})
    nan = any(bool(torch.isnan(t).any()) for t in (out, *grads))
    return {"rel_err": {key: round(val, 7) for key, val in errs.items()}, "nan": nan}


def bench_entry(method: str, graph: BenchGraph, dtype: torch.dtype, heads: int, dim: int, device: torch.device,
                args, copy_tbps: Optional[float]) -> dict:
    """Times one (graph, dtype, width, method); errors and OOM are recorded, not raised."""
    row: dict = dict(graph=graph.name, nodes=graph.num_nodes, edges=graph.num_edges, dtype=_dtype_name(dtype),
                     heads=heads, dim=dim, method=method)
    gen = torch.Generator(device=device).manual_seed(0)
    try:
        q, k, v, grad = (torch.randn(graph.num_nodes, heads, dim, generator=gen, device=device, dtype=dtype)
                         for _ in range(4))
        leaves = [x.requires_grad_() for x in (q, k, v)]
        fn = _method_fn(method, graph, device)

        def fwd():
            with torch.no_grad():
                return fn(q, k, v)

        def fwd_bwd():
            torch.autograd.grad(fn(*leaves), leaves, grad)

        row["fwd_ms"] = round(median_ms(fwd, device, args.warmup, args.reps), 4)
        row["fwd_bwd_ms"] = round(median_ms(fwd_bwd, device, args.warmup, args.reps), 4)
        row["fwd_bwd_peak_mb"] = peak_mb(fwd_bwd, device)
        if method == "graphattn":
            floor_bytes = graph.num_edges * heads * 2 * dim * q.element_size()
            row["gather_bytes"] = floor_bytes
            row["achieved_TBps"] = round(floor_bytes / (row["fwd_ms"] * 1e-3) / 1e12, 4)
            if copy_tbps is not None:
                row["gather_floor_ms"] = round(floor_bytes / (copy_tbps * 1e12) * 1e3, 4)
                row["floor_fraction"] = round(row["gather_floor_ms"] / row["fwd_ms"], 4)
            if not args.no_accuracy and (dtype != torch.float32 or dim in args.baseline_dims):
                row.update(accuracy(graph, q, k, v, grad))
    except torch.OutOfMemoryError:
        row["error"] = "OOM"
    except Exception as err:  # recorded; the run goes on
        row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


# --------------------------------------------------------------------------- report
def _find(rows: list[dict], **match) -> Optional[dict]:
    for r in rows:
        if all(r.get(key) == val for key, val in match.items()) and "error" not in r and "skipped" not in r:
            return r
    return None


def acceptance_checks(rows: list[dict], heads: int = 8, dim: int = 64) -> list[dict]:
    """The issue's GPU targets (bf16, H=8, D=64); ``ok=None`` where the entries are missing."""
    base = dict(dtype="bf16", heads=heads, dim=dim)
    checks = []

    def add(name, value, ok):
        checks.append(dict(check=name, value=None if value is None else round(value, 4), ok=ok))

    def ratio(graph, num, den, key):
        a, b = _find(rows, graph=graph, method=num, **base), _find(rows, graph=graph, method=den, **base)
        return None if a is None or b is None or not a.get(key) or not b.get(key) else a[key] / b[key]

    for g in ("uniform_65k", "uniform_262k"):
        for other, target in (("pyg", 10.0), ("pyg_compiled", 4.0)):
            r = ratio(g, other, "graphattn", "fwd_bwd_ms")
            add(f"{g}: fwd+bwd speed-up vs {other} >= {target:g}x", r, None if r is None else r >= target)
        r = ratio(g, "graphattn", "pyg", "fwd_bwd_peak_mb")
        add(f"{g}: peak memory / PyG eager <= 1/8", r, None if r is None else r <= 0.125)
    for g in ("uniform_65k", "uniform_262k", "uniform_1m"):
        r = _find(rows, graph=g, method="graphattn", **base)
        f = None if r is None else r.get("floor_fraction")
        add(f"{g}: forward reaches >= 50% of the gather floor", f, None if f is None else f >= 0.5)
    r = _find(rows, graph="uniform_1m", method="graphattn", **base)
    add("uniform_1m (1M/16.8M): fwd+bwd runs", None if r is None else r["fwd_bwd_ms"], None if r is None else True)
    for size in ("16k", "65k", "262k", "1m"):
        u = _find(rows, graph=f"uniform_{size}", method="graphattn", **base)
        p = _find(rows, graph=f"rmat_{size}", method="graphattn", **base)
        r = None if u is None or p is None else (p["fwd_bwd_ms"] / p["edges"]) / (u["fwd_bwd_ms"] / u["edges"])
        add(f"rmat_{size}: power-law time per edge <= 1.5x uniform", r, None if r is None else r <= 1.5)
    bf16 = [r for r in rows if r.get("method") == "graphattn" and r.get("dtype") == "bf16" and "rel_err" in r]
    worst = max((max(r["rel_err"].values()) for r in bf16), default=None)
    ok = None if worst is None else worst < 1e-2 and not any(r["nan"] for r in bf16)
    add("bf16 rel. error vs fp32 reference < 1e-2, no NaN (all graphs, out and grads)", worst, ok)
    return checks


def _fmt(x, width=10, digits=3) -> str:
    return f"{x:{width}.{digits}f}" if isinstance(x, (int, float)) else f"{'-':>{width}}"


HEADER = (f"{'graph':>13} {'nodes':>8} {'edges':>9} {'dtype':>5} {'D':>4} {'method':>13} {'fwd ms':>10} "
          f"{'fwd+bwd ms':>10} {'peak MB':>10} {'floor %':>8} {'max rel err':>11}")


def format_row(r: dict) -> str:
    head = (f"{r['graph']:>13} {r.get('nodes', 0):>8} {r.get('edges', 0):>9} {r['dtype']:>5} {r['dim']:>4} "
            f"{r['method']:>13}")
    if "error" in r or "skipped" in r:
        return f"{head}  {r.get('error') or r.get('skipped')}"
    frac = r.get("floor_fraction")
    err = max(r["rel_err"].values()) if "rel_err" in r else None
    return (f"{head} {_fmt(r['fwd_ms'])} {_fmt(r['fwd_bwd_ms'])} {_fmt(r.get('fwd_bwd_peak_mb'), 10, 1)} "
            f"{_fmt(None if frac is None else 100 * frac, 8, 1)} {_fmt(err, 11, 5)}")


def markdown_table(result: dict) -> str:
    ver = result["versions"]
    lines = [f"Device: {result['device']} (torch {ver['torch']}, triton {ver['triton']}), "
             f"H={result['heads']}, copy bandwidth {result['copy_TBps'] or '-'} TB/s, median ms; "
             f"graphattn = {result['graphattn_engine']}.", "",
             "| graph | nodes | edges | dtype | D | method | fwd ms | fwd+bwd ms | peak MB | % gather floor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r or "skipped" in r:
            cells = [r.get("error") or r.get("skipped"), "", "", "", ""]
        else:
            frac = r.get("floor_fraction")
            cells = [f"{r['fwd_ms']:.3f}", f"{r['fwd_bwd_ms']:.3f}",
                     "" if r.get("fwd_bwd_peak_mb") is None else f"{r['fwd_bwd_peak_mb']:.0f}",
                     "" if frac is None else f"{100 * frac:.0f}%"]
        lines.append(f"| {r['graph']} | {r.get('nodes', '')} | {r.get('edges', '')} | {r['dtype']} | {r['dim']} | "
                     f"{r['method']} | " + " | ".join(cells[:4]) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    """fwd+bwd time per graph and method (first dtype and width of the run), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "fwd_bwd_ms" in r]
    if not rows:
        return
    dtype, dim = rows[0]["dtype"], rows[0]["dim"]
    rows = [r for r in rows if r["dtype"] == dtype and r["dim"] == dim]
    graphs = list(dict.fromkeys(r["graph"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(graphs)), 4))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs, ys = [], []
        for j, g in enumerate(graphs):
            r = _find(rows, graph=g, method=m)
            if r is not None:
                xs.append(j + i * width)
                ys.append(r["fwd_bwd_ms"])
        ax.bar(xs, ys, width=width, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(graphs))], graphs, rotation=30, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("forward+backward ms")
    ax.set_title(f"{result['device']}, {dtype}, H={result['heads']}, D={dim}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- driver
def run(args) -> dict:
    device = torch.device(args.device)
    start = time.perf_counter()
    copy_tbps = copy_bandwidth_tbps(device)
    rows: list[dict] = []
    print(HEADER, flush=True)
    graphs: dict[str, Optional[BenchGraph]] = {}
    for dim in args.dims:
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            for name in args.graphs:
                if name not in graphs:
                    graphs.clear()  # keep at most one graph on the device
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    try:
                        graphs[name] = make_graph(name, device, args.molhiv_root, args.molhiv_graphs)
                    except torch.OutOfMemoryError:
                        graphs[name] = None
                graph = graphs[name]
                if graph is None:
                    if dim == args.dims[0] and dtype_name == args.dtypes[0]:
                        print(f"{name:>13}  skipped (no data: pass --molhiv-root, or OOM building it)", flush=True)
                    continue
                for method in args.methods:
                    if method != "graphattn" and dim not in args.baseline_dims:
                        continue
                    row = dict(graph=name, nodes=graph.num_nodes, edges=graph.num_edges, dtype=dtype_name,
                               heads=args.heads, dim=dim, method=method)
                    why = _applies(method, graph, device, args)
                    if why is None and time.perf_counter() - start > args.budget_s:
                        why = "time budget"
                    if why is not None:
                        row["skipped"] = why
                    else:
                        row = bench_entry(method, graph, dtype, args.heads, dim, device, args, copy_tbps)
                        row["graph_build_ms"] = round(graph.build_ms, 2)
                    rows.append(row)
                    print(format_row(row), flush=True)
    result = dict(device=device_name(device), versions=versions(), heads=args.heads,
                  graphattn_engine="Triton kernels" if device.type == "cuda" else "plain-PyTorch reference (CPU)",
                  copy_TBps=None if copy_tbps is None else round(copy_tbps, 3),
                  gather_floor=f"E*H*(D+Dv)*bytes / copy bandwidth (measured here; {H100_COPY_TBPS} TB/s "
                               "on the anchor H100)",
                  reps=args.reps, warmup=args.warmup, rows=rows,
                  checks=acceptance_checks(rows, args.heads) if device.type == "cuda" else [],
                  wall_s=round(time.perf_counter() - start, 1))
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"kernels-{device_tag(device)}{'-quick' if args.quick else ''}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown_table(result))
    if not args.no_plot:
        plot(result, stem + ".png")
    print(f"\nwrote {stem}.json, {stem}.md" + ("" if args.no_plot else f", {stem}.png") + f" ({result['wall_s']} s)")
    print(f"\n{result['device']}  H={args.heads}  copy {result['copy_TBps'] or '-'} TB/s  torch "
          f"{result['versions']['torch']}  triton {result['versions']['triton']}")
    print(HEADER)
    for row in rows:
        print(format_row(row))
    for c in result["checks"]:
        status = "PASS" if c["ok"] else "n/a " if c["ok"] is None else "FAIL"
        print(f"{status}  {c['check']}: {c['value'] if c['value'] is not None else 'n/a'}")
    return result


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="graphattn bench kernels", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--graphs", nargs="+", default=None, choices=sorted(GRAPHS),
                        help=f"default: {' '.join(DEFAULT_GRAPHS)} (--quick: {' '.join(QUICK_GRAPHS)})")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                        help="default: bf16 fp32 on a GPU, fp32 on the CPU")
    parser.add_argument("--dims", nargs="+", type=int, default=[64, 32, 128], help="head widths D (= Dv)")
    parser.add_argument("--baseline-dims", nargs="+", type=int, default=[64],
                        help="widths at which the baselines run too (graphattn runs at every --dims)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--molhiv-root", default=None,
                        help="an ogbg_molhiv folder in OGB layout (raw/edge.csv.gz, ...)")
    parser.add_argument("--molhiv-graphs", type=int, default=4096, help="molecules in the molhiv batch")
    parser.add_argument("--dense-max", type=int, default=65536, help="largest N for FlexAttention and dense SDPA")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=480.0, help="no new entries start after this many seconds")
    parser.add_argument("--compile-on-cpu", action="store_true", help="also run the compiled baselines on the CPU")
    parser.add_argument("--no-accuracy", action="store_true",
                        help="skip the comparison with the fp32 reference (otherwise: bf16/fp16 always, fp32 at "
                             "--baseline-dims)")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                        help="folder of the results (benchmarks/results updates the tracked ones)")
    parser.add_argument("--quick", action="store_true",
                        help="small graphs, D=64 only, few repetitions (CPU smoke test)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.graphs is None:
        args.graphs = QUICK_GRAPHS if args.quick else DEFAULT_GRAPHS
    if args.dtypes is None:
        args.dtypes = ["fp32"] if args.device == "cpu" else ["bf16", "fp32"]
    if args.quick:
        args.dims, args.reps, args.warmup, args.molhiv_graphs = [64], 3, 1, min(args.molhiv_graphs, 64)
    return args


def main(argv: Optional[list[str]] = None) -> dict:
    """Entry point of ``graphattn bench kernels``."""
    return run(parse_args(argv))
