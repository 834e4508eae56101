r"""GraphTransformer: the Dwivedi & Bresson graph transformer as a ready-made model."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..nn.graph_transformer_layer import GraphTransformerLayer
from .base import GraphModel
from .heads import PredictionHead

__all__ = ["GraphTransformer"]


class GraphTransformer(GraphModel):
    r"""Encoder -> ``num_layers`` x :class:`~graphattn.nn.GraphTransformerLayer` (attention on the
    edges, optional edge stream) -> :class:`PredictionHead`.

    Args:
        channels, out_channels, num_layers, heads: hidden width, targets, depth, attention heads.
        node_encoder: ``"ogb"`` (atom categories) or the float input width.
        edge_encoder: ``"ogb"``, a float input width, or ``None`` (no edge features).
        lap_pe_dim, rwse_dim: positional encodings added to the input (0: none).
        rwse_concat_dim: width of the RWSE concatenated instead (GraphGPS's ``Atom+RWSE``; 0: added), see
            :class:`~graphattn.models.InputEncoder`.
        norm: ``"batch_norm"``/``"layer_norm"``.
        clamp: ``None`` or the paper's ``5.0``.
        dropout: dropout probability.
        head_layers, head_style, level, pool: see :class:`PredictionHead` (the official code's ``MLPReadout``
            is ``head_layers=3, head_style="san_graph"``; level ``"graph"``/``"node"``).
        extra_categories: categories of the virtual-node transform.

    Forward: see :func:`graphattn.models.model_inputs`; returns ``[G, out]`` or ``[N, out]``.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 4, heads: int = 8,
                 node_encoder: Union[str, int] = "ogb", edge_encoder: Union[str, int, None] = "ogb",
                 lap_pe_dim: int = 0, rwse_dim: int = 0, norm: str = "batch_norm", clamp: Optional[float] = None,
                 dropout: float = 0.0, head_layers: int = 1, head_style: str = "mlp", level: str = "graph",
                 pool: str = "mean", extra_categories: int = 0, rwse_concat_dim: int = 0):
        super().__init__(channels, node_encoder, edge_encoder, lap_pe_dim, rwse_dim, extra_categories,
                         rwse_concat_dim)
        edge_dim = channels if edge_encoder is not None else None
        self.layers = torch.nn.ModuleList([
            GraphTransformerLayer(channels, heads, edge_dim=edge_dim, dropout=dropout, norm=norm, clamp=clamp,
                                  update_edges=i < num_layers - 1)
            for i in range(num_layers)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout, style=head_style)

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        graph = AttentionGraph(edge_index, h.size(0))           # one CSR for all layers
        for layer in self.layers:
            if layer.update_edges:
                h, edge_attr = layer(h, graph, edge_attr)
            else:
                h = layer(h, graph, edge_attr)
        return h
