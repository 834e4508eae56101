r"""``graphattn bench dropout``: training steps of a model with PyTorch's dropout masks (``bernoulli_``)
against the engine's counter-based masks (:func:`graphattn.functional.dropout`), same model, same weights.

The model is built from a shipped config (``--config``, default ``gin-vn-molhiv``: OGB's GIN with a virtual
node, 5 layers of width 300, dropout 0.5); the data are ``--batches`` batches of ``--batch-size`` training
graphs of ``--dataset`` (OGB layout under ``--root``; without ``--root`` the embedded ogbg-molesol). One
training step is the training loop's (:func:`graphattn.training.train_epoch`): ``zero_grad``, forward, the
masked BCE / MSE loss, backward, the optimiser's step. The two sides are one model whose dropout generator
is switched (:func:`~graphattn.functional.use_dropout_generator`), timed in turn on the same batch
(``--reps`` pairs after warm-up, all of them); the medians are reported with ``torch time / counter time``
(above 1: the counter masks are faster). ``--profile`` adds, for each side, the ops of one step by self CPU
time (``torch.profiler``). Writes ``dropout-<device>.json`` into ``--out-dir``.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional

import torch
from torch import nn

from ..config import load_config
from ..data import load_dataset
from ..functional import DROPOUT_GENERATORS, use_dropout_generator
from ..models.inputs import model_inputs
from ..train_cli import build_model
from ..training import build_optimizer, masked_loss
from . import bench_parser, device_name, parse_bench_args, report_result, versions
from .layers import interleaved_ms

__all__ = ["training_step", "profile_step", "main"]

COUNTER, TORCH = DROPOUT_GENERATORS


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, task_type: str,
                  generator: str) -> Callable[[], None]:
    """One training step per call on the next of ``batches`` (in turn), its dropout masks drawn by ``generator``."""
    position = iter(range(1 << 62))

    def step() -> None:
        batch = batches[next(position) % len(batches)]
        with use_dropout_generator(generator):
            optimizer.zero_grad(set_to_none=True)
            masked_loss(model(**model_inputs(batch)), batch.y, task_type).backward()
            optimizer.step()

    return step


def profile_step(step: Callable[[], None], rows: int) -> list[dict]:
    """The ``rows`` ops of one call of ``step`` with the most self CPU time: name, calls, self CPU ms, share."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [dict(op=e.key, calls=e.count, self_cpu_ms=round(e.self_cpu_time_total / 1e3, 3),
                 share=round(e.self_cpu_time_total / total, 4)) for e in events[:rows]]


def run(args: argparse.Namespace) -> dict:
    from torch_geometric.loader import DataLoader

    device = torch.device(args.device)
    bench = load_dataset(args.dataset, args.root)
    loader = DataLoader(bench.subset("train"), batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    batches = []
    for batch in loader:
        batches.append(batch.to(device))
        if len(batches) == args.batches:
            break
    config = load_config(args.config)
    torch.manual_seed(0)
    model = build_model(config, bench.num_tasks).to(device).train()
    optimizer = build_optimizer(model, config.optim)
    steps = {name: training_step(model, optimizer, batches, bench.task_type, name) for name in (TORCH, COUNTER)}
    torch_ms, counter_ms = interleaved_ms([steps[TORCH], steps[COUNTER]], device, args.reps, warmup=args.warmup,
                                          max_seconds=float("inf"))
    nodes = sum(b.num_nodes for b in batches) / len(batches)
    print(f"{args.config} on {bench.name} (batch {args.batch_size}, {nodes:.0f} nodes on average), "
          f"{torch.get_num_threads()} thread(s): torch dropout {torch_ms:.2f} ms, counter dropout {counter_ms:.2f} ms "
          f"per step: {torch_ms / counter_ms:.3f}x", flush=True)
    profiles = {}
    if args.profile:
        for name, step in steps.items():
            profiles[name] = profile_step(step, args.profile)
            print(f"ops of one step with {name} dropout, by self CPU time:")
            for row in profiles[name]:
                print(f"  {row['op']:45s} {row['calls']:5d} calls {row['self_cpu_ms']:9.3f} ms "
                      f"{100 * row['share']:5.1f} %")
    return {"benchmark": "dropout", "device": device_name(device), "threads": torch.get_num_threads(),
            "versions": versions(), "args": vars(args), "dataset": bench.name, "mean_nodes_per_batch": nodes,
            "parameters": sum(p.numel() for p in model.parameters()),
            "torch_dropout_ms": round(torch_ms, 4), "counter_dropout_ms": round(counter_ms, 4),
            "torch_over_counter": round(torch_ms / counter_ms, 4), "profiles": profiles}


def main(argv: Optional[list[str]] = None) -> None:
    p = bench_parser("graphattn bench dropout", __doc__.splitlines()[0], device="cpu")
    p.add_argument("--config", default="gin-vn-molhiv", help="a shipped config or a YAML file (model and optimiser)")
    p.add_argument("--dataset", default="ogbg-molesol", help="an ogbg-* dataset (OGB layout under --root)")
    p.add_argument("--root", default=None, help="folder holding the dataset (omit for the embedded ogbg-molesol)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="distinct training batches, used in turn")
    p.add_argument("--reps", type=int, default=30, help="interleaved timing pairs (after warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed pairs first")
    p.add_argument("--profile", type=int, default=0, help="also profile one step per side: this many ops (0: no)")
    args = parse_bench_args(p, argv)
    report_result(run(args), args, "dropout")


if __name__ == "__main__":
    main()
