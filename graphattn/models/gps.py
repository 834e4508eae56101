r"""GPS: the GraphGPS model (local MPNN + global attention per layer) as a ready-made model."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..nn.gps_layer import AttentionMasks, GPSLayer
from .base import GraphModel
from .heads import PredictionHead
from .local import EDGE_AWARE_LOCAL_CONVS, LocalConv

__all__ = ["GPS", "LayerMasks", "MaskProvider"]

#: The masks of one batch, layer by layer: ``layer index -> (attention graph, AttentionMasks)``, each
#: ``None`` for the default (the full per-graph attention graph; no masks). Called once per layer,
#: just before the layer runs.
LayerMasks = Callable[[int], Tuple[Optional[AttentionGraph], Optional[AttentionMasks]]]
#: A per-layer provider of masks: called once per forward, after the encoders, with the node states
#: ``h`` ``[N, C]``, ``batch`` ``[N]`` and the number of graphs; returns the batch's :data:`LayerMasks`.
#: GTSP's :class:`~graphattn.sparsify.SparseGPS` is one.
MaskProvider = Callable[[Tensor, Tensor, int], LayerMasks]


class GPS(GraphModel):
    r"""Encoder -> ``num_layers`` x :class:`~graphattn.nn.GPSLayer` -> :class:`PredictionHead`.

    The block-diagonal attention graph of the batch is built once per forward and shared by all
    layers. Pass ``num_graphs`` (as :func:`model_inputs` does) to keep the model free of
    device syncs; then it compiles with ``torch.compile(fullgraph=True)``. ``model(..., masks=provider)``
    runs every layer with the attention graph and :class:`~graphattn.nn.AttentionMasks` that the
    per-layer provider gives (``MaskProvider``; GTSP, :mod:`graphattn.sparsify`, is one).

    With ``local_conv="gatedgcn"`` (GraphGPS's ``CustomGatedGCN``) the edge features are updated
    by every layer and passed to the next, as in GraphGPS's ``GPSLayer``:
    :math:`\mathbf{h}^{M} = \operatorname{Norm}_1(\mathbf{x} + \operatorname{Dropout}(\operatorname{ReLU}
    (\operatorname{BN}(\hat{\mathbf{x}}))))` (GraphGPS applies this dropout and residual inside the
    GatedGCN layer and then only :math:`\operatorname{Norm}_1`: the same result) and
    :math:`\mathbf{e} \leftarrow \mathbf{e} + \operatorname{Dropout}(\operatorname{ReLU}(\operatorname{BN}
    (\hat{\mathbf{e}})))`, with the layer's ``dropout``; see :class:`~graphattn.nn.GatedGCNLayer`.

    Args:
        channels, out_channels, num_layers, heads: hidden width, targets, depth, attention heads.
        local_conv: one of :data:`~graphattn.models.LOCAL_CONVS` (see :class:`LocalConv`) or ``None``
            (global attention only).
        attn_type: ``"multihead"``, ``"performer"`` or ``"linear"``.
        attn_dropout: attention dropout (``multihead``) or output dropout (linear kinds).
        attn_kwargs: more :class:`~graphattn.nn.GPSLayer` kwargs.
        node_encoder, edge_encoder, lap_pe_dim, rwse_dim, extra_categories, rwse_concat_dim: see
            :class:`GraphTransformer`.
        norm, dropout, act: of the feed-forward blocks, GINE's MLP and the head.
        head_layers, head_style, level, pool: see :class:`PredictionHead`.
    """

    takes_masks = True

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

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int, masks: Optional[MaskProvider] = None) -> Tensor:
        layer_masks = masks(h, batch, num_graphs) if masks is not None else None
        shared = None
        if layer_masks is None and self.attn_type == "multihead":
            shared = AttentionGraph.full_per_graph(batch, num_graphs)
        for i, layer in enumerate(self.layers):
            attn_graph, attn_masks = layer_masks(i) if layer_masks is not None else (shared, None)
            h, edge_attr = layer.forward_with_edges(h, edge_index, batch, attn_graph, num_graphs,
                                                    attn_masks=attn_masks, edge_attr=edge_attr)
        return h
