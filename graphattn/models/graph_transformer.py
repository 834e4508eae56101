r"""GraphTransformer: the Dwivedi & Bresson graph transformer as a ready-made model."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..nn.graph_transformer_layer import GraphTransformerLayer
from .encoders import EdgeInputEncoder, InputEncoder
from .heads import PredictionHead

__all__ = ["GraphTransformer"]


class GraphTransformer(torch.nn.Module):
    r"""Encoder -> ``num_layers`` x :class:`~graphattn.nn.GraphTransformerLayer` (attention on the
    edges, optional edge stream) -> :class:`PredictionHead`.

    Args:
        channels: hidden width; out_channels: targets; num_layers; heads.
        node_encoder: ``"ogb"`` (atom categories) or the float input width.
        edge_encoder: ``"ogb"``, a float input width, or ``None`` (no edge features).
        lap_pe_dim, rwse_dim: positional encodings added to the input (0: none).
        norm: ``"batch_norm"``/``"layer_norm"``; clamp: ``None`` or the paper's ``5.0``.
        dropout; head_layers; level (``"graph"``/``"node"``); pool; extra_categories (virtual-node transform).

    Forward: see :func:`graphattn.models.model_inputs`; returns ``[G, out]`` or ``[N, out]``.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 4, heads: int = 8,
                 node_encoder: Union[str, int] = "ogb", edge_encoder: Union[str, int, None] = "ogb",
                 lap_pe_dim: int = 0, rwse_dim: int = 0, norm: str = "batch_norm", clamp: Optional[float] = None,
                 dropout: float = 0.0, head_layers: int = 1, level: str = "graph", pool: str = "mean",
                 extra_categories: int = 0):
        super().__init__()
        self.encoder = InputEncoder(channels, node_encoder, lap_pe_dim, rwse_dim, extra_categories)
        self.edge_encoder = (EdgeInputEncoder(channels, edge_encoder, extra_categories)
                             if edge_encoder is not None else None)
        edge_dim = channels if edge_encoder is not None else None
        self.layers = torch.nn.ModuleList([
            GraphTransformerLayer(channels, heads, edge_dim=edge_dim, dropout=dropout, norm=norm, clamp=clamp,
                                  update_edges=i < num_layers - 1)
            for i in range(num_layers)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None,
                batch: Optional[Tensor] = None, num_graphs: Optional[int] = None,
                lap_pe: Optional[Tensor] = None, rwse: Optional[Tensor] = None,
                virtual_mask: Optional[Tensor] = None) -> Tensor:
        h = self.encoder(x, lap_pe, rwse)
        graph = AttentionGraph(edge_index, h.size(0))           # one CSR for all layers
        e = self.edge_encoder(edge_attr) if self.edge_encoder is not None else None
        for layer in self.layers:
            if layer.update_edges:
                h, e = layer(h, graph, e)
            else:
                h = layer(h, graph, e)
        return self.head(h, batch, num_graphs, virtual_mask)
