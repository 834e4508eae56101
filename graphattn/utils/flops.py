r"""count_flops: the floating-point operations a graph model spends on one batch, by part."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping

import torch
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear as PygLinear

from ..functional import as_attention_graph
from ..models.inputs import model_inputs
from ..models.local import LocalConv
from ..nn.graph_transformer_layer import GraphTransformerLayer
from ..nn.multihead_attention import MultiheadGraphAttention

__all__ = ["FlopCount", "count_flops"]

#: per-edge, per-channel operations of the local message-passing layers (message + aggregation)
MESSAGE_OPS = {"gine": 3, "gin": 3, "gatedgcn": 6, "resgatedgcn": 6, "gcn": 2}


@dataclass
class FlopCount:
    r"""FLOPs (multiply and add counted separately) of one forward pass, by part.

    Attributes:
        attention: edge-level attention, :math:`E\,H\,(4d + 3)` per attention call (score SDDMM
            :math:`2d`, normaliser :math:`3`, SpMM :math:`2d`; :math:`+2EH` with an edge mask,
            :math:`+EC` for edge-feature modulation).
        attention_proj: the query/key/value/output projections of attention.
        linear: every other linear map (MLPs, message-passing MLPs, encoders, prediction head).
        message_passing: edge-level work of the local MPNN layers.
        masking: GTSP's token and edge scorers.
    """

    attention: int = 0
    attention_proj: int = 0
    linear: int = 0
    message_passing: int = 0
    masking: int = 0

    @property
    def total(self) -> int:
        return self.attention + self.attention_proj + self.linear + self.message_passing + self.masking

    def as_dict(self) -> Dict[str, int]:
        return {**asdict(self), "total": self.total}


def _nnz(weight: Tensor) -> int:
    if weight.layout != torch.strided:
        return int(weight.values().numel())
    return int(torch.count_nonzero(weight))


def _linear_flops(weight: Tensor, bias: Any, rows: int) -> int:
    """:math:`2\\,\\text{rows}\\cdot\\operatorname{nnz}(W)` (+ rows x out for the bias)."""
    return 2 * rows * _nnz(weight) + (rows * weight.size(0) if bias is not None else 0)


def _is_linear(module: torch.nn.Module) -> bool:
    from ..sparsify.export import SparseLinear

    return isinstance(module, (torch.nn.Linear, PygLinear, SparseLinear))


def _categories(model: torch.nn.Module) -> Dict[int, str]:
    """id(linear module) -> the part it counts in."""
    from ..sparsify.edge_mask import EdgeMask
    from ..sparsify.token_mask import TokenMask

    out: Dict[int, str] = {}
    for module in model.modules():
        if isinstance(module, (TokenMask, EdgeMask)):
            part = "masking"
        elif isinstance(module, MultiheadGraphAttention):
            part = "attention_proj"
        elif isinstance(module, GraphTransformerLayer):
            for name in ("Q", "K", "V", "O_h", "E"):
                if hasattr(module, name):
                    out[id(getattr(module, name))] = "attention_proj"
            continue
        else:
            continue
        for sub in module.modules():
            out[id(sub)] = part
    return out


@torch.no_grad()
def count_flops(model: torch.nn.Module, batch: Any) -> FlopCount:
    r"""Counts the FLOPs of ``model`` on ``batch`` by running it once (evaluation mode, no grad)
    with forward hooks, so it counts what actually runs: a pruned attention graph has fewer
    edges, a pruned attention fewer heads, a removed block nothing, a sparse weight its
    non-zeros (linear maps cost :math:`2\,N\,\operatorname{nnz}(W)`).

    Args:
        model: any module built from graphattn's layers (e.g. :class:`~graphattn.models.GPS`,
            :class:`~graphattn.models.GraphTransformer`, :class:`~graphattn.sparsify.SparseGPS`).
        batch: a PyG ``Data``/``Batch`` (called as ``model(**model_inputs(batch))``) or a mapping of
            keyword arguments.

    Returns:
        :class:`FlopCount`.
    """
    from ..sparsify.edge_mask import BilinearEdgeScore

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = dict(batch) if isinstance(batch, Mapping) else model_inputs(batch)
    count = FlopCount()
    parts = _categories(model)

    def add(part: str, value: int) -> None:
        setattr(count, part, getattr(count, part) + int(value))

    def on_linear(module, args, output):
        x = args[0]
        rows = x.numel() // x.size(-1) if x.dim() else 0
        add(parts.get(id(module), "linear"), _linear_flops(module.weight, module.bias, rows))

    def on_mha(module, args, kwargs, output):
        x, graph = args[0], args[1]
        edge_mask = args[2] if len(args) > 2 else kwargs.get("edge_mask")
        graph = as_attention_graph(graph, x.size(0), x.size(0))
        heads, d = module.num_heads, module.in_proj_weight.size(0) // (3 * max(module.num_heads, 1))
        add("attention_proj", _linear_flops(module.in_proj_weight, module.in_proj_bias, x.size(0)))
        add("attention", graph.num_edges * heads * (4 * d + 3 + (2 if edge_mask is not None else 0)))

    def on_graph_transformer(module, args, kwargs, output):
        x = args[0]
        graph = as_attention_graph(args[1], x.size(0), x.size(0))
        d = module.in_channels // module.heads
        extra = d if module.use_edges else 0
        add("attention", graph.num_edges * module.heads * (4 * d + 3 + extra))

    def on_local(module, args, output):
        x, edge_index = args[0], args[1]
        add("message_passing", edge_index.size(1) * x.size(-1) * MESSAGE_OPS[module.kind])

    def on_edge_score(module, args, output):
        add("masking", output.numel() * 2 * module.rank)

    handles = []
    for module in model.modules():
        if _is_linear(module):
            handles.append(module.register_forward_hook(on_linear))
        elif isinstance(module, MultiheadGraphAttention):
            handles.append(module.register_forward_hook(on_mha, with_kwargs=True))    # out_proj: a linear
        elif isinstance(module, GraphTransformerLayer):
            handles.append(module.register_forward_hook(on_graph_transformer, with_kwargs=True))
        elif isinstance(module, LocalConv):
            handles.append(module.register_forward_hook(on_local))
        elif isinstance(module, BilinearEdgeScore):
            handles.append(module.register_forward_hook(on_edge_score))
    was_training = model.training
    model.eval()
    try:
        model(**inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return count
