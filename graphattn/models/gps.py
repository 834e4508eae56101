r"""GPS: the GraphGPS model (local MPNN + global attention per layer) as a ready-made model."""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..nn.gps_layer import GPSLayer
from .encoders import EdgeInputEncoder, InputEncoder
from .heads import PredictionHead
from .inputs import resolve_batch
from .local import LocalConv

__all__ = ["GPS"]


class GPS(torch.nn.Module):
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
        super().__init__()
        self.encoder = InputEncoder(channels, node_encoder, lap_pe_dim, rwse_dim, extra_categories)
        uses_edges = edge_encoder is not None and local_conv in ("gine", "gatedgcn")   # GCN ignores them
        self.edge_encoder = EdgeInputEncoder(channels, edge_encoder, extra_categories) if uses_edges else None
        kwargs = {"dropout": attn_dropout, **(attn_kwargs or {})}
        self.attn_type = attn_type
        self.layers = torch.nn.ModuleList([
            GPSLayer(channels, LocalConv(local_conv, channels) if local_conv is not None else None, heads=heads,
                     dropout=dropout, act=act, norm=norm, attn_type=attn_type, attn_kwargs=kwargs)
            for _ in range(num_layers)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None,
                batch: Optional[Tensor] = None, num_graphs: Optional[int] = None,
                lap_pe: Optional[Tensor] = None, rwse: Optional[Tensor] = None,
                virtual_mask: Optional[Tensor] = None) -> Tensor:
        h = self.encoder(x, lap_pe, rwse)
        batch, num_graphs = resolve_batch(batch, h.size(0), num_graphs, h.device)
        e = self.edge_encoder(edge_attr) if self.edge_encoder is not None else None
        attn_graph = AttentionGraph.full_per_graph(batch, num_graphs) if self.attn_type == "multihead" else None
        for layer in self.layers:
            h = layer(h, edge_index, batch, attn_graph=attn_graph, num_graphs=num_graphs, edge_attr=e)
        return self.head(h, batch, num_graphs, virtual_mask)
