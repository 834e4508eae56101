r"""MPNNVirtualNode: an MPNN (GINE / GatedGCN / GCN) with OGB-style residual virtual nodes."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn.virtual_node import VirtualNode
from .base import GraphModel
from .heads import PredictionHead
from .local import EDGE_AWARE_LOCAL_CONVS, LocalConv

__all__ = ["MPNNVirtualNode"]


class MPNNVirtualNode(GraphModel):
    r"""The OGB virtual-node MPNN (Cai et al. 2023, OGB variant): per layer :math:`l`

    .. math::
        \mathbf{h} \leftarrow \mathbf{h} + \mathbf{v}[\text{batch}],\quad
        \mathbf{h}' = \operatorname{Dropout}(\sigma(\operatorname{BN}(\operatorname{MPNN}_l(\mathbf{h}))))
        \;(+\,\mathbf{h}\ \text{residual}),

    and for all but the last layer :math:`\mathbf{v} \leftarrow \mathbf{v}
    + \operatorname{Dropout}(\operatorname{MLP}_l(\sum_{i \in g} \mathbf{h}_i + \mathbf{v}))` (one :class:`~graphattn.nn.VirtualNode` per layer, as in OGB);
    no activation after the last layer. Edge features are embedded once and passed to every layer.

    Args:
        channels; out_channels; num_layers; local_conv (``"gine"``, ``"gatedgcn"``, ``"gcn"``);
        num_virtual_nodes (0: the plain MPNN baseline, no virtual node); residual; dropout;
        head_layers; level; pool;
        node_encoder, edge_encoder, lap_pe_dim, rwse_dim, extra_categories: see :class:`GraphTransformer`.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 5, local_conv: str = "gine",
                 num_virtual_nodes: int = 1, residual: bool = True, dropout: float = 0.0,
                 node_encoder: Union[str, int] = "ogb", edge_encoder: Union[str, int, None] = "ogb",
                 lap_pe_dim: int = 0, rwse_dim: int = 0, head_layers: int = 1, level: str = "graph",
                 pool: str = "mean", extra_categories: int = 0):
        uses_edges = local_conv in EDGE_AWARE_LOCAL_CONVS
        super().__init__(channels, node_encoder, edge_encoder if uses_edges else None, lap_pe_dim, rwse_dim,
                         extra_categories)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_virtual_nodes < 0:
            raise ValueError(f"num_virtual_nodes must be >= 0, got {num_virtual_nodes}")
        self.residual, self.dropout, self.num_virtual_nodes = residual, dropout, num_virtual_nodes
        self.convs = torch.nn.ModuleList([LocalConv(local_conv, channels) for _ in range(num_layers)])
        self.norms = torch.nn.ModuleList([torch.nn.BatchNorm1d(channels) for _ in range(num_layers)])
        self.virtual_nodes = torch.nn.ModuleList([VirtualNode(channels, num_virtual_nodes, dropout)
                                                  for _ in range(num_layers - 1 if num_virtual_nodes else 0)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout)

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        state = h.new_zeros(num_graphs, max(self.num_virtual_nodes, 1), h.size(-1))
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h_in = h + state.mean(dim=1)[batch] if self.num_virtual_nodes else h   # VirtualNode.broadcast
            out = norm(conv(h_in, edge_index, edge_attr))
            out = F.dropout(F.relu(out) if i < last else out, p=self.dropout, training=self.training)
            h = out + h_in if self.residual else out
            if i < len(self.virtual_nodes):
                state = self.virtual_nodes[i].update(h_in, state, batch)
        return h
