r"""GPS: the GraphGPS model (local MPNN + global attention per layer) as a ready-made model."""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..nn.gps_layer import GPSLayer
from .base import GraphModel
from .heads import PredictionHead
from .local import EDGE_AWARE_LOCAL_CONVS, LocalConv

__all__ = ["GPS"]


class GPS(GraphModel):
    r"""Encoder -> ``num_layers`` x :class:`~graphattn.nn.GPSLayer` -> :class:`PredictionHead`.

    The block-diagonal attention graph of the batch is built once per forward and shared by all
    layers. Pass ``num_graphs`` (as :func:`model_inputs` does) to keep the model free of
    device syncs; then it compiles with ``torch.compile(fullgraph=True)``.

    Args:
        channels: hidden width; out_channels: targets; num_layers; heads.
        local_conv: ``"gine"``, ``"gatedgcn"``, ``"gcn"`` or ``None`` (global attention only).
        attn_type: ``"multihead"``, ``"performer"`` or ``"linear"``; attn_dropout: attention dropout
            (``multihead``) or output dropout (linear kinds); attn_kwargs: more :class:`GPSLayer` kwargs.
        node_encoder, edge_encoder, lap_pe_dim, rwse_dim, extra_categories: see :class:`GraphTransformer`.
        norm; dropout; act; head_layers; level; pool.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 4, heads: int = 4,
                 local_conv: Optional[str] = "gine", attn_type: str = "multihead", attn_dropout: float = 0.0,
                 attn_kwargs: Optional[Dict[str, Any]] = None, node_encoder: Union[str, int] = "ogb",
                 edge_encoder: Union[str, int, None] = "ogb", lap_pe_dim: int = 0, rwse_dim: int = 0,
                 norm: Optional[str] = "batch_norm", dropout: float = 0.0, act: str = "relu",
                 head_layers: int = 1, level: str = "graph", pool: str = "mean", extra_categories: int = 0):
        uses_edges = local_conv in EDGE_AWARE_LOCAL_CONVS
        super().__init__(channels, node_encoder, edge_encoder if uses_edges else None, lap_pe_dim, rwse_dim,
                         extra_categories)
        kwargs = {"dropout": attn_dropout, **(attn_kwargs or {})}
        self.attn_type = attn_type
        self.layers = torch.nn.ModuleList([
            GPSLayer(channels, LocalConv(local_conv, channels) if local_conv is not None else None, heads=heads,
                     dropout=dropout, act=act, norm=norm, attn_type=attn_type, attn_kwargs=kwargs)
            for _ in range(num_layers)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout)

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        attn_graph = AttentionGraph.full_per_graph(batch, num_graphs) if self.attn_type == "multihead" else None
        for layer in self.layers:
            h = layer(h, edge_index, batch, attn_graph=attn_graph, num_graphs=num_graphs, edge_attr=edge_attr)
        return h
