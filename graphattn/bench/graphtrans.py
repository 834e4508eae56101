r"""``graphattn bench graphtrans``: training steps of GraphTrans-small on NCI1 batches, graphattn's
:class:`~graphattn.models.GraphTrans` against the padded model of the GraphTrans code, same weights.

The model is ``graphtrans-small-nci1`` (5 OGB GCN layers of width 128, then 3 post-norm transformer layers,
d 128, 4 heads, feed-forward 256, dropout 0.1, a ``<CLS>`` token per graph). The padded side
(:class:`PaddedGraphTrans`, ucbrise/graphtrans's ``modules/transformer_encoder.py``) shares the encoder, GNN,
projections, ``<CLS>`` embedding and classifier with the graphattn model and runs the transformer as
:class:`torch.nn.TransformerEncoder` (loaded with the graphattn transformer's ``state_dict``) over
``to_dense_batch`` of each batch plus the ``<CLS>`` tokens, with a key padding mask; graphattn runs it on the
engine over the block-diagonal attention graph of the graphs' tokens (no padding). One training step is
forward, cross-entropy and backward in training mode (dropout on; the optimiser is left out, the same code on
both sides).

Batches: ``--batches`` batches of ``--graphs`` graphs drawn at random from NCI1 (``--root``: a folder with
``NCI1/raw/``). The sides are timed in turn step by step (``--reps`` pairs after warm-up, each pair on the next
batch), medians reported with ``padded time / graphattn time`` (above 1: graphattn is faster). Writes
``graphtrans-<device>.json`` into ``--out-dir``.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from ..config import load_config
from ..data import load_dataset
from ..models import GraphTrans
from ..models.inputs import model_inputs
from . import bench_parser, device_name, parse_bench_args, report_result, versions
from .layers import interleaved_ms

__all__ = ["PaddedGraphTrans", "main"]

CONFIG = "graphtrans-small-nci1"


class PaddedGraphTrans(nn.Module):
    r"""``model`` with its transformer run as GraphTrans's code runs it: the node states of every graph padded
    to the batch's largest graph (``to_dense_batch``), the ``<CLS>`` token appended, the input LayerNorm, then
    :class:`torch.nn.TransformerEncoder` (post-norm, sequence first, ``src_key_padding_mask`` over the padding)
    and the classifier on the ``<CLS>`` outputs. Everything but the transformer is ``model``'s own modules; the
    transformer is loaded with ``model.transformer``'s weights (a copy: train one side only)."""

    def __init__(self, model: GraphTrans):
        super().__init__()
        self.model = model
        first = model.transformer.layers[0]
        d_model, heads = first.linear1.in_features, first.self_attn.num_heads
        layer = nn.TransformerEncoderLayer(d_model, heads, first.linear1.out_features, first.dropout.p)
        self.transformer = nn.TransformerEncoder(layer, len(model.transformer.layers), nn.LayerNorm(d_model),
                                                 enable_nested_tensor=False).to(model.cls_embedding)
        self.transformer.load_state_dict(model.transformer.state_dict())

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int, **_) -> Tensor:
        m = self.model
        h = m.gnn2transformer(m.gnn_nodes(m.encoder(x), edge_index, batch, num_graphs))
        padded, real = to_dense_batch(h, batch, batch_size=num_graphs)                  # [G, S, C], [G, S]
        tokens = torch.cat([padded, m.cls_embedding.expand(num_graphs, 1, -1)], dim=1)
        padding = torch.cat([~real, real.new_zeros(num_graphs, 1)], dim=1)
        if m.norm_input is not None:
            tokens = m.norm_input(tokens)
        out = self.transformer(tokens.transpose(0, 1), src_key_padding_mask=padding)    # [S + 1, G, C]
        return m.head(out[-1])


def _batches(root: Optional[str], graphs: int, count: int, device: torch.device, seed: int = 0) -> tuple[list, int]:
    """``count`` batches of ``graphs`` random NCI1 graphs, and the number of classes."""
    from torch_geometric.data import Batch

    bench = load_dataset("nci1", root)
    gen = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(len(bench.dataset), generator=gen)[:graphs] for _ in range(count)]
    return [Batch.from_data_list([bench.dataset[int(i)] for i in pick]).to(device) for pick in picks], bench.num_tasks


def _train_steps(model: nn.Module, batches: list) -> Callable[[], None]:
    """A training step on the next batch (in turn) per call."""
    inputs = [(model_inputs(b), b.y) for b in batches]
    counter = iter(range(1 << 62))

    def step() -> None:
        kwargs, y = inputs[next(counter) % len(inputs)]
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(**kwargs), y).backward()

    return step


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    batches, classes = _batches(args.root, args.graphs, args.batches, device)
    torch.manual_seed(0)
    ours = GraphTrans(batches[0].num_features, classes, **load_config(CONFIG).model_args).to(device).train()
    padded = PaddedGraphTrans(ours).to(device).train()
    ours_ms, padded_ms = interleaved_ms([_train_steps(ours, batches), _train_steps(padded, batches)], device,
                                        args.reps, max_seconds=args.max_seconds)
    nodes = [b.num_nodes for b in batches]
    largest = [int(torch.bincount(b.batch).max()) for b in batches]
    row = dict(graphattn_ms=round(ours_ms, 3), padded_ms=round(padded_ms, 3),
               padded_over_graphattn=round(padded_ms / ours_ms, 3), graphs=args.graphs, batches=args.batches,
               mean_nodes=sum(nodes) / len(nodes), mean_padded_tokens=sum(
                   (n + 1) * args.graphs for n in largest) / len(largest),
               parameters=sum(p.numel() for p in ours.parameters()))
    print(f"GraphTrans-small on NCI1, {args.graphs} graphs per batch: graphattn {ours_ms:.2f} ms  padded "
          f"{padded_ms:.2f} ms  padded/graphattn {row['padded_over_graphattn']:.2f}x", flush=True)
    return {"benchmark": "graphtrans", "config": CONFIG, "device": device_name(device),
            "threads": torch.get_num_threads(), "versions": versions(), "args": vars(args), "rows": [row]}


def nci1_parser(prog: str, description: str, rounds: str) -> argparse.ArgumentParser:
    """The arguments the NCI1 GraphTrans benches share (data, device, batches, timing; ``rounds`` names a timed
    unit in the help: ``"pairs"``, ``"rounds"``)."""
    p = bench_parser(prog, description)
    p.add_argument("--root", required=True, help="folder holding NCI1/raw/ (the TU release files)")
    p.add_argument("--graphs", type=int, default=128, help="graphs per batch (the config's batch size)")
    p.add_argument("--batches", type=int, default=8, help="distinct batches, used in turn")
    p.add_argument("--reps", type=int, default=30, help=f"timed {rounds} (after 3 warm-up {rounds})")
    p.add_argument("--max-seconds", type=float, default=600.0, help=f"stop timing after this long (>= 5 {rounds})")
    return p


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_bench_args(nci1_parser("graphattn bench graphtrans", __doc__.splitlines()[0], "pairs"), argv)
    report_result(run(args), args, "graphtrans")
