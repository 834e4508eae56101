r"""GPS: the GraphGPS model (local MPNN + global attention per layer) as a ready-made model."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
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

    With ``local_conv="gatedgcn"`` (GraphGPS's ``CustomGatedGCN``) the edge features are updated
    by every layer and passed to the next, as in GraphGPS's ``GPSLayer``:
    :math:`\mathbf{h}^{M} = \operatorname{Norm}_1(\mathbf{x} + \operatorname{Dropout}(\operatorname{ReLU}
    (\operatorname{BN}(\hat{\mathbf{x}}))))` (GraphGPS applies this dropout and residual inside the
    GatedGCN layer and then only :math:`\operatorname{Norm}_1`: the same result) and
    :math:`\mathbf{e} \leftarrow \mathbf{e} + \operatorname{Dropout}(\operatorname{ReLU}(\operatorname{BN}
    (\hat{\mathbf{e}})))`, with the layer's ``dropout``; see :class:`~graphattn.nn.GatedGCNLayer`.

    Args:
        channels: hidden width; out_channels: targets; num_layers; heads.
        local_conv: one of :data:`~graphattn.models.LOCAL_CONVS` (see :class:`LocalConv`) or ``None``
            (global attention only).
        attn_type: ``"multihead"``, ``"performer"`` or ``"linear"``; attn_dropout: attention dropout
            (``multihead``) or output dropout (linear kinds); attn_kwargs: more :class:`GPSLayer` kwargs.
        node_encoder, edge_encoder, lap_pe_dim, rwse_dim, extra_categories, rwse_concat_dim: see
            :class:`GraphTransformer`.
        norm; dropout; act (feed-forward blocks, GINE's MLP and the head); head_layers; head_style
        (see :class:`PredictionHead`); level; pool.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 4, heads: int = 4,
                 local_conv: Optional[str] = "gine", attn_type: str = "multihead", attn_dropout: float = 0.0,
                 attn_kwargs: Optional[Dict[str, Any]] = None, node_encoder: Union[str, int] = "ogb",
                 edge_encoder: Union[str, int, None] = "ogb", lap_pe_dim: int = 0, rwse_dim: int = 0,
                 norm: Optional[str] = "batch_norm", dropout: float = 0.0, act: str = "relu",
                 head_layers: int = 1, head_style: str = "mlp", level: str = "graph", pool: str = "mean",
                 extra_categories: int = 0, rwse_concat_dim: int = 0):
        uses_edges = local_conv in EDGE_AWARE_LOCAL_CONVS
        super().__init__(channels, node_encoder, edge_encoder if uses_edges else None, lap_pe_dim, rwse_dim,
                         extra_categories, rwse_concat_dim)
        kwargs = {"dropout": attn_dropout, **(attn_kwargs or {})}
        self.attn_type, self.dropout = attn_type, dropout
        self.layers = torch.nn.ModuleList([
            GPSLayer(channels, LocalConv(local_conv, channels, act) if local_conv is not None else None,
                     heads=heads, dropout=dropout, act=act, norm=norm, attn_type=attn_type, attn_kwargs=kwargs)
            for _ in range(num_layers)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout, act, head_style)

    def layer_forward(self, layer: GPSLayer, h: Tensor, edge_index: Tensor, batch: Tensor,
                      edge_attr: Optional[Tensor], **kwargs: Any) -> Tuple[Tensor, Optional[Tensor]]:
        """One layer (``kwargs`` for :class:`GPSLayer`): ``(h', edge_attr')``, the edge features updated
        when the local conv updates them (GatedGCN), else passed through."""
        edge_out: List[Tensor] = []
        h = layer(h, edge_index, batch, edge_attr=edge_attr, edge_out=edge_out, **kwargs)
        if edge_out:
            edge_attr = edge_attr + F.dropout(edge_out[0], self.dropout, self.training)
        return h, edge_attr

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        attn_graph = AttentionGraph.full_per_graph(batch, num_graphs) if self.attn_type == "multihead" else None
        for layer in self.layers:
            h, edge_attr = self.layer_forward(layer, h, edge_index, batch, edge_attr, attn_graph=attn_graph,
                                              num_graphs=num_graphs)
        return h
