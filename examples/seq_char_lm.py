r"""Long-context character-level language model on the Python standard library's source.

Real text that ships with every Python installation: the ``.py`` files under
``sysconfig.get_paths()["stdlib"]`` (``site-packages`` excluded), split by file into train /
validation with a fixed hash of the relative path (``crc32 % 10 == 0`` -> validation), read
as bytes (vocabulary 256). A :class:`graphattn.seq.SeqGraphTransformer` causal decoder is
trained on random windows of ``--context`` characters with each attention variant:

* ``full``    — causal full attention (fused SDPA: FlashAttention on a GPU);
* ``window``  — causal sliding window + global sink tokens;
* ``topk``    — each query keeps its top-k keys (blockwise, per layer);
* ``routing`` — online k-means routing (Routing Transformer), one router per layer.

Every variant runs in its own process (same seed, same batches) and reports validation
bits per character on fixed validation windows, the median time per training step and
the peak memory (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS). A table is
printed last and the results written as JSON.

CPU default (a few minutes with ``OMP_NUM_THREADS=1``)::

    python examples/seq_char_lm.py

GPU, 16k-character contexts::

    python examples/seq_char_lm.py --device cuda --context 16384 --dim 256 --depth 4 --heads 4 \
        --steps 300 --batch 2 --window 512 --sinks 4 --topk 256 --clusters 8 --eval-windows 16
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import sysconfig
import time
import zlib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graphattn.seq import Causal, GlobalTokens, KMeansRouting, SeqGraphTransformer, SlidingWindow, TopK  # noqa: E402

VARIANTS = ("full", "window", "topk", "routing")


def stdlib_corpus(valid_every: int = 10) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(train_bytes, valid_bytes, info)`` from the standard library's ``.py`` files, split by file."""
    root = sysconfig.get_paths()["stdlib"]
    train, valid, files = [], [], {"train": 0, "valid": 0}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as f:
                data = f.read() + b"\n\n"
            if zlib.crc32(rel.encode()) % valid_every == 0:
                valid.append(data)
                files["valid"] += 1
            else:
                train.append(data)
                files["train"] += 1
    as_tensor = lambda chunks: torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8)  # noqa: E731
    tr, va = as_tensor(train), as_tensor(valid)
    return tr, va, dict(root=root, files=files, train_chars=tr.numel(), valid_chars=va.numel())


def make_pattern(variant: str, args) -> object:
    if variant == "full":
        return Causal()
    if variant == "window":
        return SlidingWindow(args.window, causal=True) | GlobalTokens(args.sinks, causal=True)
    if variant == "topk":
        return TopK(args.topk, causal=True, block_size=1024)
    if variant == "routing":
        return KMeansRouting(args.dim, args.clusters, causal=True)   # heads concatenated
    raise ValueError(f"unknown variant {variant!r}")


def _windows(data: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    return data[starts[:, None] + torch.arange(length + 1)[None, :]].long()


def evaluate(model, valid: torch.Tensor, args, device) -> float:
    """Bits per character over ``eval_windows`` evenly spaced validation windows."""
    model.eval()
    starts = torch.linspace(0, valid.numel() - args.context - 2, args.eval_windows).long()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(device, args):
        for s in starts:
            w = _windows(valid, s.view(1), args.context).to(device)
            logits = model(w[0, :-1])
            total += float(F.cross_entropy(logits.float(), w[0, 1:], reduction="sum"))
            count += args.context
    model.train()
    return total / count / math.log(2)


def _autocast(device: torch.device, args):
    if device.type == "cuda" and args.dtype == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train_variant(variant: str, args) -> dict:
    """Trains one variant from scratch and returns its measurements (runs in its own process)."""
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    device = torch.device(args.device)
    train, valid, info = stdlib_corpus()
    torch.manual_seed(args.seed)
    model = SeqGraphTransformer(256, args.dim, args.depth, args.heads, make_pattern(variant, args)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, args.warmup)))
    gen = torch.Generator().manual_seed(args.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_times, losses = [], []
    for step in range(args.steps):
        starts = torch.randint(0, train.numel() - args.context - 2, (args.batch,), generator=gen)
        w = _windows(train, starts, args.context).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with _autocast(device, args):
            logits = model(w[:, :-1].reshape(-1), [args.context] * args.batch)
            loss = F.cross_entropy(logits.float(), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
        if args.log_every and (step + 1) % args.log_every == 0:
            print(f"  [{variant}] step {step + 1}/{args.steps} train bpc {losses[-1] / math.log(2):.3f} "
                  f"{step_times[-1]:.2f}s/step", flush=True)
    bpc = evaluate(model, valid, args, device)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
        memory = "cuda max_memory_allocated"
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory = "process peak RSS"
    timed = step_times[min(2, len(step_times) - 1):]
    return dict(variant=variant, valid_bpc=round(bpc, 4), final_train_bpc=round(losses[-1] / math.log(2), 4),
                step_s=round(statistics.median(timed), 4), peak_mb=round(peak_mb, 1), memory=memory,
                params=sum(p.numel() for p in model.parameters()), corpus=info)


def _child(variant: str, args, queue) -> None:
    queue.put(train_variant(variant, args))


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {os.cpu_count()} cores, {os.environ.get('OMP_NUM_THREADS', 'all')} thread(s)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp32"],
                   help="compute dtype: bf16 autocast (CUDA default) or fp32 (the CPU always)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--window", type=int, default=64, help="causal window (keys back) of the window variant")
    p.add_argument("--sinks", type=int, default=4, help="global sink tokens of the window variant")
    p.add_argument("--topk", type=int, default=64)
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--eval-windows", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", default=None, help="JSON path (default runs/seq_char_lm-<device>.json)")
    args = p.parse_args(argv)
    if args.dtype is None or args.device == "cpu":
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    ctx = mp.get_context("spawn")
    results = []
    for variant in args.variants:
        print(f"variant {variant}", flush=True)
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(variant, args, queue))
        proc.start()
        results.append(queue.get())
        proc.join()
    name = device_name(args.device)
    corpus = results[0]["corpus"]
    print(f"\nstdlib char-LM, {corpus['files']['train']} train / {corpus['files']['valid']} valid files "
          f"({corpus['train_chars'] / 1e6:.1f}M / {corpus['valid_chars'] / 1e6:.1f}M chars), context {args.context}, "
          f"batch {args.batch}, {args.steps} steps, dim {args.dim}, depth {args.depth}, heads {args.heads}; {name}")
    print(f"{'variant':>8} {'valid bpc':>10} {'s/step':>8} {'peak MB':>9}  ({results[0]['memory']})")
    for r in results:
        print(f"{r['variant']:>8} {r['valid_bpc']:>10.3f} {r['step_s']:>8.3f} {r['peak_mb']:>9.0f}")
    out = args.out or os.path.join("runs", f"seq_char_lm-{'cpu' if args.device == 'cpu' else 'cuda'}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(dict(device=name, args=vars(args), results=results), f, indent=1)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()
