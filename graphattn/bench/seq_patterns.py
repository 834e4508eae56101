r"""Sequence-pattern benchmark: graphattn vs FlexAttention vs dense SDPA, same run, same device.

For each pattern and length (H heads, D channels, one sequence) it times forward and
forward+backward of

* ``graphattn`` — :func:`graphattn.graph_attention` on the pattern's :class:`SeqGraph`
  (automatic CSR/BSR choice; the chosen path and tile fill are recorded);
* ``graphattn_csr`` — the CSR kernels forced (to show what the BSR path buys);
* ``graphattn_bsr<M>x<N>`` — the BSR kernel forced with ``M x N`` tiles (``--bsr-blocks``,
  to pick :data:`sparse_kernels.bsr.DEFAULT_BLOCK` on a new card);
* ``flex`` — :func:`torch.nn.attention.flex_attention.flex_attention` (compiled on CUDA) with
  the block mask of the same rule (``SeqGraph.mask_mod``);
* ``sdpa_mask`` — :func:`~torch.nn.functional.scaled_dot_product_attention` with the dense
  boolean mask;
* ``sdpa_flash`` — unmasked SDPA (``is_causal`` for causal), only where the pattern is
  full / causal (FlashAttention on a GPU).

Median of ``--reps`` timed runs after warm-up (CUDA events on a GPU), peak memory over the
call, forward agreement with FlexAttention. Out-of-memory and other failures are recorded per
entry and the run goes on. Writes ``<out-dir>/seq_patterns-<device>.json`` and a PNG
plot, and prints a table (and the issue's targets at 16k on a GPU) last.

GPU (one command, < 10 min)::

    graphattn bench seq-patterns --device cuda

CPU smoke test::

    graphattn bench seq-patterns --device cpu --quick
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
import warnings
from typing import Optional

import torch
import torch.nn.functional as F

import sparse_kernels as sk
from graphattn import graph_attention
from graphattn.bench import DEFAULT_OUT_DIR, device_name, device_tag, median_ms, peak_mb, synchronize, versions
from graphattn.functional import explain
from sparse_kernels.bsr import select_bsr
from graphattn.seq import patterns as seq_patterns
from graphattn.seq.patterns import (Blocks, Causal, Dilated, Full, GlobalTokens, Pattern, SeqGraph, SlidingWindow,
                                    clear_cache)

__all__ = ["PATTERNS", "run", "main"]

#: name -> (pattern, description)
PATTERNS: dict[str, tuple[Pattern, str]] = {
    "window512": (SlidingWindow(256), "sliding window |i-j| <= 256 (w = 512)"),
    "causal_window512_sinks4": (SlidingWindow(512, causal=True) | GlobalTokens(4, causal=True),
                                "causal, 0 <= i-j <= 512, plus 4 sink tokens"),
    "causal": (Causal(), "causal full attention"),
    "full": (Full(), "full attention"),
    "blocks256": (Blocks(256), "block-diagonal, blocks of 256"),
    "dilated128x4": (Dilated(128, 4, causal=True), "causal dilated window, 129 keys, dilation 4"),
}
DEFAULT_PATTERNS = ["window512", "causal_window512_sinks4", "causal"]
DEFAULT_LENGTHS = [1024, 4096, 16384, 65536]
METHODS = ["graphattn", "graphattn_csr", "flex", "sdpa_mask", "sdpa_flash"]


def _methods_for(pattern: Pattern, device: torch.device, n: int, args) -> dict[str, bool]:
    """Methods that apply, FlexAttention first (the others' outputs are compared with it)."""
    methods = {"flex": True, "graphattn": True, "graphattn_csr": device.type == "cuda"}
    methods.update({f"graphattn_bsr{b}": device.type == "cuda" for b in args.bsr_blocks})
    methods.update({"sdpa_mask": n <= args.dense_max, "sdpa_flash": isinstance(pattern, (Full, Causal))})
    return methods


def _engine_csr(graph: SeqGraph) -> sk.CSR:
    """The engine's CSR of a pattern graph (its edges are sorted by destination), from the public API."""
    col, row = graph.edge_index
    return sk.csr_from_sorted_rows(row, col, graph.num_src_nodes, graph.num_dst_nodes)


def _attention_fns(name: str, pattern: Pattern, graph: SeqGraph, device: torch.device, compile_flex: bool):
    """``fn(q_nhd, k, v, q_bhnd, k, v) -> out`` for one method (graphs / masks built here, untimed)."""
    if name == "graphattn":
        return lambda q, k, v, qb, kb, vb: graph_attention(q, k, v, graph)
    if name == "graphattn_csr":
        csr = _engine_csr(graph)
        return lambda q, k, v, qb, kb, vb: sk.attention(q, k, v, csr)
    if name.startswith("graphattn_bsr"):
        from sparse_kernels.bsr import bsr_from_csr
        from sparse_kernels.triton.bsr import bsr_attention
        block_m, block_n = (int(b) for b in name[len("graphattn_bsr"):].split("x"))
        layout = bsr_from_csr(_engine_csr(graph), block_m, block_n)
        return lambda q, k, v, qb, kb, vb: bsr_attention(q, k, v, layout)
    if name == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        mask_mod = graph.mask_mod()
        block_mask = create_block_mask(mask_mod, None, None, graph.num_dst_nodes, graph.num_src_nodes,
                                       device=device)
        if compile_flex:
            flex = torch.compile(flex_attention)
        else:                                              # CPU smoke mode: the unfused reference
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            flex = flex_attention
        return lambda q, k, v, qb, kb, vb: flex(qb, kb, vb, block_mask=block_mask)
    if name == "sdpa_mask":
        mask = graph.dense_mask()
        return lambda q, k, v, qb, kb, vb: F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)
    if name == "sdpa_flash":
        is_causal = isinstance(pattern, Causal)
        return lambda q, k, v, qb, kb, vb: F.scaled_dot_product_attention(qb, kb, vb, is_causal=is_causal)
    raise ValueError(f"unknown method {name!r}")


def _as_nhd(out: torch.Tensor) -> torch.Tensor:
    return out if out.dim() == 3 else out[0].transpose(0, 1)


def _bench_one(pattern_name: str, n: int, args, device: torch.device, dtype: torch.dtype) -> list[dict]:
    pattern = PATTERNS[pattern_name][0]
    rows = []
    t0 = time.perf_counter()
    try:
        graph = pattern.graph(n, device)
        probe = torch.empty(n, 1, 16, dtype=dtype, device=device)   # the choice graph_attention makes
        layout = select_bsr(_engine_csr(graph)) if explain(probe, probe, probe, graph)["path"] == "bsr" else None
        synchronize(device)
    except torch.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return [dict(pattern=pattern_name, n=n, method="graphattn", error=f"OOM building the graph: {err}"[:200])]
    build_ms = (time.perf_counter() - t0) * 1e3
    info = dict(pattern=pattern_name, n=n, edges=graph.num_edges, graph_build_ms=round(build_ms, 2),
                path="bsr" if layout is not None else "csr",
                tile_fill=None if layout is None else round(layout.fill, 4))
    h, d = args.heads, args.dim
    gen = torch.Generator(device="cpu").manual_seed(0)
    base = [torch.randn(n, h, d, generator=gen).to(device=device, dtype=dtype) for _ in range(3)]
    grad = torch.randn(n, h, d, generator=gen).to(device=device, dtype=dtype)
    nhd = [x.clone().requires_grad_() for x in base]
    bhnd = [x.transpose(0, 1).unsqueeze(0).contiguous().requires_grad_() for x in base]
    grad_b = grad.transpose(0, 1).unsqueeze(0).contiguous()
    reference_out = None
    for method, applies in _methods_for(pattern, device, n, args).items():
        if not applies or (method not in args.methods and not method.startswith("graphattn_bsr")):
            continue
        row = dict(info, method=method)
        try:
            fn = _attention_fns(method, pattern, graph, device, compile_flex=device.type == "cuda")
            call = lambda: fn(*nhd, *bhnd)                                      # noqa: E731
            detached = [x.detach() for x in nhd + bhnd]
            call_fwd = lambda: fn(*detached)                                    # noqa: E731
            g = grad if method.startswith("graphattn") else grad_b
            inputs = nhd if method.startswith("graphattn") else bhnd

            def fwd_bwd():
                out = call()
                torch.autograd.grad(out, inputs, g)
            with torch.no_grad():
                out = _as_nhd(call_fwd())
            if method == "flex":
                reference_out = out.float()
            elif reference_out is not None:
                row["max_abs_diff_vs_flex"] = float((out.float() - reference_out).abs().max())
            with torch.no_grad():
                row["fwd_ms"] = round(median_ms(call_fwd, device, args.warmup, args.reps), 4)
                row["fwd_peak_mb"] = peak_mb(call_fwd, device)
            try:
                row["fwd_bwd_ms"] = round(median_ms(fwd_bwd, device, args.warmup, args.reps), 4)
                row["fwd_bwd_peak_mb"] = peak_mb(fwd_bwd, device)
            except NotImplementedError as err:        # e.g. eager FlexAttention on the CPU: forward only
                row["fwd_bwd_error"] = f"NotImplementedError: {str(err)[:120]}"
        except torch.OutOfMemoryError as err:
            row["error"] = f"OOM: {str(err)[:160]}"
        except Exception as err:                                                 # recorded, run goes on
            row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def _fmt(x: Optional[float], width: int = 10) -> str:
    return f"{x:{width}.3f}" if isinstance(x, (int, float)) else f"{'-':>{width}}"


def _fmt_row(row: dict) -> str:
    if "error" in row:
        return f"{row['pattern']:>24} {row['n']:>6} {row['method']:>14}  {row['error'][:60]}"
    return (f"{row['pattern']:>24} {row['n']:>6} {row['method']:>14} {_fmt(row.get('fwd_ms'))} "
            f"{_fmt(row.get('fwd_bwd_ms'))} {_fmt(row.get('fwd_bwd_peak_mb'), 10)} {row.get('path', ''):>4}")


def _lookup(rows: list[dict], pattern: str, n: int, method: str, key: str) -> Optional[float]:
    for r in rows:
        if r["pattern"] == pattern and r["n"] == n and r["method"] == method and key in r:
            return r[key]
    return None


def targets(rows: list[dict], n: int = 16384) -> list[dict]:
    """The issue's acceptance checks at ``n`` tokens (fwd+bwd time ratios)."""
    checks = []

    def ratio(p, a, b):
        x, y = _lookup(rows, p, n, a, "fwd_bwd_ms"), _lookup(rows, p, n, b, "fwd_bwd_ms")
        return None if x is None or y is None else x / y
    for p in ("window512", "causal_window512_sinks4"):
        r = ratio(p, "graphattn", "flex")
        checks.append(dict(check=f"{p}: graphattn / flex fwd+bwd <= 1.25", value=r,
                           ok=None if r is None else r <= 1.25))
        r = ratio(p, "graphattn", "sdpa_mask")
        checks.append(dict(check=f"{p}: graphattn faster than dense masked SDPA", value=r,
                           ok=None if r is None else r < 1.0))
    r = ratio("causal", "graphattn", "sdpa_flash")
    checks.append(dict(check="causal: graphattn / SDPA FlashAttention fwd+bwd <= 1.5", value=r,
                       ok=None if r is None else r <= 1.5))
    return checks


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    patterns = list(dict.fromkeys(r["pattern"] for r in rows))
    fig, axes = plt.subplots(1, len(patterns), figsize=(5 * len(patterns), 4), squeeze=False)
    for ax, p in zip(axes[0], patterns):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["n"], r["fwd_bwd_ms"]) for r in rows
                         if r["pattern"] == p and r["method"] == method and "fwd_bwd_ms" in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens")
        ax.set_ylabel("fwd+bwd ms")
        ax.set_title(p, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> dict:
    device = torch.device(args.device)
    for name in ("recompile_limit", "cache_size_limit"):   # one flex compile per (pattern, length)
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    start = time.perf_counter()
    rows: list[dict] = []
    print(f"{'pattern':>24} {'n':>6} {'method':>14} {'fwd ms':>10} {'fwd+bwd ms':>10} {'peak MB':>10} path",
          flush=True)
    limit = seq_patterns.MAX_DENSE_EDGES
    seq_patterns.MAX_DENSE_EDGES = 1 << 40        # the benchmark times the engine on dense patterns on purpose
    try:
        for n in args.lengths:
            for p in args.patterns:
                if time.perf_counter() - start > args.budget_s:
                    rows.append(dict(pattern=p, n=n, method="-", error="skipped: time budget"))
                    continue
                rows.extend(_bench_one(p, n, args, device, dtype))
                clear_cache()                               # free the graph before the next config
    finally:
        seq_patterns.MAX_DENSE_EDGES = limit      # the caller's process keeps its own limit
    result = dict(device=device_name(device), dtype=args.dtype, heads=args.heads, dim=args.dim,
                  versions=versions(), reps=args.reps, patterns={p: PATTERNS[p][1] for p in args.patterns},
                  rows=rows, targets=targets(rows) if device.type == "cuda" else [],
                  wall_s=round(time.perf_counter() - start, 1))
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"seq_patterns-{device_tag(device)}{'-quick' if args.quick else ''}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    if not args.no_plot:
        plot(rows, stem + ".png", f"{result['device']}, {args.dtype}, H={args.heads}, D={args.dim}")
    print(f"\nwrote {stem}.json" + ("" if args.no_plot else f" and {stem}.png"))
    print(f"\n{result['device']}  {args.dtype}  H={args.heads} D={args.dim}  median of {args.reps}")
    print(f"{'pattern':>24} {'n':>6} {'method':>14} {'fwd ms':>10} {'fwd+bwd ms':>10} {'peak MB':>10} path")
    for row in rows:
        print(_fmt_row(row))
    for c in result["targets"]:
        value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        print(f"{'PASS' if c['ok'] else 'FAIL' if c['ok'] is not None else 'n/a ':>4}  {c['check']}: {value}")
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--patterns", nargs="+", default=DEFAULT_PATTERNS, choices=sorted(PATTERNS))
    parser.add_argument("--lengths", nargs="+", type=int, default=None,
                        help=f"default {DEFAULT_LENGTHS} ([256] with --quick)")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--bsr-blocks", nargs="*", default=[], metavar="MxN",
                        help="also time the BSR kernel forced with these tiles, e.g. 64x64 128x64 (GPU)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                        help="default bf16 on a GPU, fp32 on the CPU")
    parser.add_argument("--reps", type=int, default=None, help="default 10 (2 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--dense-max", type=int, default=32768, help="longest n for dense masked SDPA")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting new configs after this")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                        help="folder of the results (benchmarks/results updates the tracked ones)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (CPU)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    for block in args.bsr_blocks:
        if not re.fullmatch(r"(16|32|64|128|256)x(16|32|64|128|256)", block):
            parser.error(f"--bsr-blocks entries look like 64x64 (powers of two >= 16), got {block!r}")
    if args.dtype is None:
        args.dtype = "fp32" if args.device == "cpu" else "bf16"
    quick = dict(lengths=[256], reps=2, warmup=1) if args.quick else {}
    defaults = dict(lengths=DEFAULT_LENGTHS, reps=10, warmup=3)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick.get(key, value))
    return args


def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
