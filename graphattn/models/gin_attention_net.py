r"""GINAttentionNet: a stack of graph-aware isomorphic attention layers with an OGB encoder and a head."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ..functional import dropout
from ..graph import AttentionGraph
from ..nn.gin_attention import GINAttention
from .base import GraphModel
from .heads import PredictionHead

__all__ = ["GINAttentionNet"]


class GINAttentionNet(GraphModel):
    r"""Encoder -> ``num_layers`` x [:math:`\mathbf{h} \leftarrow \operatorname{BN}(\mathbf{h} +
    \operatorname{Dropout}(\operatorname{GINAttention}(\mathbf{h})))`] -> :class:`PredictionHead`.

    The attention neighbourhoods are the molecule's bonds plus a self-loop (``attention="edges"``)
    or every node of the same graph (``attention="full"``, one block-diagonal attention graph per
    batch); in both cases the attention weights act as the adjacency of a GIN update
    (:class:`~graphattn.nn.GINAttention`). Bond features are not used by this layer.

    Args:
        channels, out_channels, num_layers, heads: hidden width, targets, depth, attention heads.
        mlp_ratio: per-head MLP width.
        attention: ``"edges"`` or ``"full"``.
        eps_form: ``"gin"`` or ``"released"``.
        dropout, head_layers, level, pool: see :class:`~graphattn.models.GraphTransformer`.
        node_encoder, lap_pe_dim, rwse_dim, extra_categories, rwse_concat_dim: see
            :class:`~graphattn.models.GraphTransformer`.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 4, heads: int = 4, mlp_ratio: int = 2,
                 attention: str = "edges", eps_form: str = "gin", dropout: float = 0.0,
                 node_encoder: Union[str, int] = "ogb", lap_pe_dim: int = 0, rwse_dim: int = 0,
                 head_layers: int = 1, level: str = "graph", pool: str = "mean", extra_categories: int = 0,
                 rwse_concat_dim: int = 0):
        super().__init__(channels, node_encoder, None, lap_pe_dim, rwse_dim, extra_categories, rwse_concat_dim)
        if attention not in ("edges", "full"):
            raise ValueError(f"attention must be 'edges' or 'full', got {attention!r}")
        self.attention, self.dropout = attention, dropout
        self.layers = torch.nn.ModuleList(GINAttention(channels, heads, mlp_ratio, dropout, eps_form=eps_form)
                                          for _ in range(num_layers))
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm1d(channels) for _ in range(num_layers))
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout)

    def _graph(self, edge_index: Tensor, batch: Tensor, num_nodes: int, num_graphs: int) -> AttentionGraph:
        if self.attention == "full":
            return AttentionGraph.full_per_graph(batch, num_graphs)
        loops = torch.arange(num_nodes, device=edge_index.device).expand(2, num_nodes)
        return AttentionGraph(torch.cat([edge_index, loops], 1), num_nodes)

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        graph = self._graph(edge_index, batch, h.size(0), num_graphs)
        for layer, norm in zip(self.layers, self.norms):
            h = norm(h + dropout(layer(h, graph), self.dropout, self.training))
        return h
