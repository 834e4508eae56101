r"""``graphattn bench gtsp-graphtrans``: FLOPs and training-step time of GraphTrans-small on NCI1, dense against
our GTSP (token pruning at keep ratios 0.75 and 0.5, the ``<CLS>`` token never pruned; optionally heads).

The model is ``graphtrans-small-nci1`` (:mod:`graphattn.bench.graphtrans`); each GTSP arm wraps a copy of the
same weights in :class:`~graphattn.sparsify.GTSP` (:class:`~graphattn.sparsify.SparseGraphTrans`). Per arm and
summed over ``--batches`` batches of ``--graphs`` random NCI1 graphs (``--root``: a folder with ``NCI1/raw/``):

* ``forward_flops``: the exported model's forward (:meth:`GTSP.export`: pruned tokens out of the transformer,
  pruned heads out of the projections), counted by :func:`~graphattn.utils.count_flops`
  (:class:`torch.utils.flop_counter.FlopCounterMode`);
* ``train_flops``: forward and backward of the training model (the masked GTSP: pruned tokens also out, pruned
  heads still computed and multiplied by 0), as ``count_flops(..., backward=True)`` counts them;
* ``gnn_flops``: the part no token pruning touches (input encoder and GNN);
* ``train_step_ms``: median time of a training step (forward, cross-entropy, backward; dropout and Gumbel noise
  on), the arms timed in turn step by step (``--reps`` rounds after warm-up, each round on the next batch).

FLOPs do not depend on the scorer's weights: every graph keeps :math:`\lceil r n_g\rceil` nodes and every layer
:math:`\max(1, \operatorname{round}(\rho H))` heads. Writes ``gtsp-nci1-<device>.json`` into ``--out-dir``.
"""
from __future__ import annotations

import argparse
import copy
from typing import Optional

import torch

from ..config import load_config
from ..models import GraphTrans
from ..sparsify import GTSP, GTSPConfig
from ..utils.flops import count_flops
from . import device_name, parse_bench_args, report_result, versions
from .graphtrans import CONFIG, _batches, _train_steps, nci1_parser
from .layers import interleaved_ms

__all__ = ["ARMS", "main", "run"]

#: arm name -> (token keep ratio, head density); "dense" is the plain model
ARMS = {"dense": (1.0, 1.0), "keep0.75": (0.75, 1.0), "keep0.5": (0.5, 1.0)}


def _arm_models(dense: GraphTrans, token_ratio: float, head_density: float) -> tuple[torch.nn.Module,
                                                                                    torch.nn.Module]:
    """(training model, exported model) of one arm; the dense model itself for ratio and density 1."""
    if token_ratio == 1.0 and head_density == 1.0:
        return dense, dense
    gtsp = GTSP(copy.deepcopy(dense), GTSPConfig(token_ratio=token_ratio, head_density=head_density))
    gtsp.to(dense.cls_embedding.device)
    return gtsp, gtsp.export()


def _flops(model: torch.nn.Module, batches: list, backward: bool = False) -> int:
    counts = [count_flops(model, b, backward=backward) for b in batches]
    return sum(c.total + c.backward for c in counts)


def _gnn_flops(model: GraphTrans, batches: list) -> int:
    """FLOPs of the input encoder and the GNN: all but the projection to the transformer, the transformer and
    the classifier."""
    after_gnn = ("gnn2transformer", "norm_input", "transformer", "head")
    total = 0
    for b in batches:
        count = count_flops(model, b)
        total += count.total - sum(count.by_module.get(f"{type(model).__name__}.{name}", 0) for name in after_gnn)
    return total


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    batches, classes = _batches(args.root, args.graphs, args.batches, device)
    torch.manual_seed(0)
    dense = GraphTrans(batches[0].num_features, classes, **load_config(CONFIG).model_args).to(device)
    arms = dict(ARMS)
    for density in args.head_density:
        arms[f"keep0.5-heads{density:g}"] = (0.5, density)
    models = {name: _arm_models(dense, *arm) for name, arm in arms.items()}
    dense_forward, dense_train = _flops(dense, batches), _flops(dense, batches, backward=True)
    gnn = _gnn_flops(dense, batches)
    rows = []
    for name, (train_model, exported) in models.items():
        forward, train = _flops(exported, batches), _flops(train_model, batches, backward=True)
        rows.append(dict(arm=name, token_ratio=arms[name][0], head_density=arms[name][1], forward_flops=forward,
                         forward_vs_dense=round(forward / dense_forward, 4), train_flops=train,
                         train_vs_dense=round(train / dense_train, 4)))
    steps = [_train_steps(train_model.train(), batches) for train_model, _ in models.values()]
    times = interleaved_ms(steps, device, args.reps, max_seconds=args.max_seconds)
    for row, ms in zip(rows, times):
        row["train_step_ms"] = round(ms, 3)
        row["train_time_vs_dense"] = round(ms / times[0], 3)
        print(f"{row['arm']:>18}: forward {row['forward_flops'] / 1e9:.3f} GFLOP ({row['forward_vs_dense']:.3f} of "
              f"dense), train step {row['train_flops'] / 1e9:.3f} GFLOP ({row['train_vs_dense']:.3f}), "
              f"{ms:.2f} ms", flush=True)
    nodes = sum(b.num_nodes for b in batches)
    return {"benchmark": "gtsp-graphtrans", "config": CONFIG, "label": "our GTSP measurement, not a reproduction",
            "device": device_name(device), "threads": torch.get_num_threads(), "loaded": args.loaded,
            "versions": versions(), "args": vars(args), "nodes": nodes, "gnn_flops": gnn,
            "gnn_share_of_dense_forward": round(gnn / dense_forward, 4), "rows": rows}


def main(argv: Optional[list[str]] = None) -> None:
    p = nci1_parser("graphattn bench gtsp-graphtrans", __doc__.splitlines()[0], "rounds")
    p.add_argument("--head-density", type=float, nargs="*", default=[],
                   help="also arms with keep ratio 0.5 and these head densities")
    p.add_argument("--loaded", action="store_true", help="record that the machine was busy (timing indicative)")
    args = parse_bench_args(p, argv)
    report_result(run(args), args, "gtsp-nci1")
