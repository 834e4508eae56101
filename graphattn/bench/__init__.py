"""The benchmarks, run as ``graphattn bench <name>`` (``kernels``, ``seq-patterns``, ``models``, ``layers``,
``gtsp-export``, ``gat``, ``dropout``, ``graphtrans``, ``gtsp-graphtrans``; see :data:`graphattn.cli.BENCHMARKS`),
and their timing helpers.

Every benchmark compares against its baselines in the same run on the same device, records the
device and library versions, and writes ``<out-dir>/<name>-<device>.json`` plus a plot. The default
``--out-dir`` is :data:`DEFAULT_OUT_DIR` (``runs/bench``, not tracked by git); the tracked results are
updated only when asked, with ``--out-dir benchmarks/results``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from typing import Callable, Optional

import torch

__all__ = ["DEFAULT_OUT_DIR", "bench_parser", "parse_bench_args", "device_name", "device_tag", "synchronize",
           "median_ms", "peak_mb", "versions", "write_result", "report_result"]

#: Where the benchmarks write unless told otherwise (``--out-dir benchmarks/results`` updates the tracked results).
DEFAULT_OUT_DIR = os.path.join("runs", "bench")


def bench_parser(prog: str, description: str, device: Optional[str] = None) -> argparse.ArgumentParser:
    """A parser with the arguments of every training-step benchmark: ``--device`` (default ``device``, or
    ``cuda`` where available and ``cpu`` otherwise), ``--threads`` and ``--out-dir``; the benchmark adds its own."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--device", default=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                   help="folder of the results (benchmarks/results updates the tracked ones)")
    return p


def parse_bench_args(parser: argparse.ArgumentParser, argv: Optional[list[str]] = None) -> argparse.Namespace:
    """``parser``'s arguments (of :func:`bench_parser`), with the CPU thread count applied on the CPU."""
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    return args


def device_name(device: torch.device) -> str:
    """``torch.cuda.get_device_name`` on a GPU, ``cpu (<processor>, <n> cores)`` otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def device_tag(device: torch.device) -> str:
    """A file-name-safe tag of the device: ``nvidia-h100-80gb-hbm3``, ``cpu``."""
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int = 3, reps: int = 10,
              max_total_ms: float = 3000.0) -> float:
    """Median milliseconds of ``fn()`` (CUDA events on a GPU) after ``warmup`` calls.

    Slow functions get fewer repetitions (at least 3) so one measurement stays near ``max_total_ms``.
    """
    first = 0.0
    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        first = (time.perf_counter() - t0) * 1e3
    reps = max(3, min(reps, int(max_total_ms / max(first, 1e-3))))
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mb(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak memory allocated by ``fn()`` above what was allocated before (MiB); ``None`` off the GPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def versions() -> dict[str, Optional[str]]:
    """Versions of torch, CUDA, Triton and PyG (``None`` where absent)."""
    out: dict[str, Optional[str]] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("triton", "torch_geometric"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def write_result(result: dict, out_dir: str, name: str, device: torch.device) -> str:
    """Writes ``result`` to ``<out_dir>/<name>-<device tag>.json`` (creating the folder) and returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}-{device_tag(device)}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path


def report_result(result: dict, args: argparse.Namespace, name: str) -> None:
    """Writes ``result`` as :func:`write_result` does into ``args.out_dir`` and prints the path."""
    print(f"-> {write_result(result, args.out_dir, name, torch.device(args.device))}", flush=True)
