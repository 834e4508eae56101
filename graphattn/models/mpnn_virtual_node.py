r"""MPNNVirtualNode: an MPNN (GINE / GIN / GatedGCN / GCN ...) with OGB-style virtual nodes."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor
from torch_geometric.nn.resolver import activation_resolver

from ..functional import dropout
from ..nn.virtual_node import VirtualNode
from .base import GraphModel
from .encoders import EdgeInputEncoder
from .heads import PredictionHead
from .local import EDGE_AWARE_LOCAL_CONVS, LocalConv

__all__ = ["MPNNVirtualNode"]

BLOCKS = ("ogb", "graphgps")
#: Local convs after which the "graphgps" block applies the activation (GraphGPS's ``GCNConvLayer``); not
#: after the MLP-based ones (``GINEConvLayer``: its MLP holds it) nor GatedGCN (ReLU inside).
_GRAPHGPS_ACT_AFTER = ("gcn", "resgatedgcn")


class MPNNVirtualNode(GraphModel):
    r"""The virtual-node MPNN of OGB (``GNN_node_Virtualnode``) and Cai et al. (2023): a learnable
    initial state :math:`\mathbf{v}^{(0)}` (zero at start, as OGB's ``Embedding(1, C)``), then per
    layer :math:`l`

    .. math::
        \mathbf{h}^{in} = \mathbf{h} + \mathbf{v}[\text{batch}],\quad
        \mathbf{h} \leftarrow \operatorname{Dropout}(\mathbf{o}_l)\;(+\,\mathbf{h}^{in}\ \text{with residual}),

    and for all but the last layer :math:`\mathbf{v} \leftarrow [\mathbf{v} +]\,\operatorname{Dropout}(
    \operatorname{MLP}_l(\sum_{i \in g} \mathbf{h}^{in}_i + \mathbf{v}))` (one :class:`~graphattn.nn.VirtualNode`
    per layer). The layer output :math:`\mathbf{o}_l` depends on ``block``:

    * ``"ogb"`` (OGB's ``conv.py``): :math:`\mathbf{o}_l = \sigma(\operatorname{BN}(\operatorname{MPNN}_l
      (\mathbf{h}^{in})))`, no :math:`\sigma` after the last layer;
    * ``"graphgps"`` (GraphGPS's layer classes, as in the LRGB code of Tönshoff et al. 2023 and Cai
      et al. 2023): no model-level norm, the last layer like the others;
      :math:`\mathbf{o}_l = \sigma(\operatorname{GCN}(\mathbf{h}^{in}))` for ``gcn`` (and ``resgatedgcn``),
      :math:`\mathbf{o}_l = \operatorname{GINE}(\mathbf{h}^{in})` with MLP Linear-:math:`\sigma`-Dropout-Linear
      for ``gine`` (and OGB's MLP for ``gin``: the MLP holds the nonlinearity).

    In both, GatedGCN brings its own BN and ReLU: :math:`\mathbf{o}_l = \operatorname{ReLU}(\operatorname{BN}
    (\hat{\mathbf{x}}))` and the edge features are updated the same way, :math:`\mathbf{e} \leftarrow
    \operatorname{Dropout}(\operatorname{ReLU}(\operatorname{BN}(\hat{\mathbf{e}})))\;(+\,\mathbf{e})`, and
    passed to the next layer (GraphGPS's ``GatedGCNLayer``). Edge features are embedded once and
    shared by all layers, or embedded per layer (``edge_encoder_per_layer``: OGB's ``GINConv`` has its
    own ``BondEncoder``). ``num_virtual_nodes=0`` gives the plain MPNN. OGB's ``gin-virtual``:
    ``local_conv="gin", residual=False, dropout=0.5, edge_encoder_per_layer=True, vn_hidden_factor=2,
    vn_residual=False`` (``graphattn/configs/gin-vn-molhiv.yaml``).

    Args:
        channels, out_channels, num_layers: hidden width, targets, depth.
        local_conv: see :class:`LocalConv`.
        num_virtual_nodes: 0: no virtual node.
        residual, dropout: residual connections, dropout probability.
        block: ``"ogb"`` or ``"graphgps"`` (above).
        act: activation :math:`\sigma` (a PyG activation resolver name), also of GINE's MLP and the head;
        edge_encoder_per_layer: one edge encoder per layer instead of one shared;
        vn_hidden_factor: hidden width of the virtual-node MLP in multiples of ``channels`` (OGB: 2);
        vn_residual: :math:`\mathbf{v} \leftarrow \mathbf{v} + \dots` (OGB: only in its residual model);
        head_layers, head_style, level, pool: see :class:`PredictionHead`.
        node_encoder, edge_encoder, lap_pe_dim, rwse_dim, extra_categories, rwse_concat_dim: see
            :class:`GraphTransformer`.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 5, local_conv: str = "gine",
                 num_virtual_nodes: int = 1, residual: bool = True, dropout: float = 0.0, block: str = "ogb",
                 act: str = "relu", edge_encoder_per_layer: bool = False, vn_hidden_factor: int = 1,
                 vn_residual: bool = True, node_encoder: Union[str, int] = "ogb",
                 edge_encoder: Union[str, int, None] = "ogb", lap_pe_dim: int = 0, rwse_dim: int = 0,
                 head_layers: int = 1, head_style: str = "mlp", level: str = "graph", pool: str = "mean",
                 extra_categories: int = 0, rwse_concat_dim: int = 0):
        uses_edges = local_conv in EDGE_AWARE_LOCAL_CONVS
        shared_edges = uses_edges and not edge_encoder_per_layer
        super().__init__(channels, node_encoder, edge_encoder if shared_edges else None, lap_pe_dim, rwse_dim,
                         extra_categories, rwse_concat_dim)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_virtual_nodes < 0:
            raise ValueError(f"num_virtual_nodes must be >= 0, got {num_virtual_nodes}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        self.residual, self.dropout, self.block = residual, dropout, block
        self.convs = torch.nn.ModuleList([LocalConv(local_conv, channels, act, dropout if block == "graphgps" else 0.0)
                                          for _ in range(num_layers)])
        if edge_encoder_per_layer and (not uses_edges or self.convs[0].updates_edges or edge_encoder is None):
            raise ValueError(f"edge_encoder_per_layer needs an edge encoder and a local conv that reads but does "
                             f"not update edge features, got {local_conv!r} and edge_encoder={edge_encoder!r}")
        self.edge_encoders = (torch.nn.ModuleList([EdgeInputEncoder(channels, edge_encoder, extra_categories)
                                                   for _ in range(num_layers)]) if edge_encoder_per_layer else None)
        own_norm = block == "ogb" and not self.convs[0].normalizes
        self.norms = (torch.nn.ModuleList([torch.nn.BatchNorm1d(channels) for _ in range(num_layers)])
                      if own_norm else None)
        self.act = activation_resolver(act)
        self.act_after = own_norm or (block == "graphgps" and local_conv in _GRAPHGPS_ACT_AFTER)
        self.num_virtual_nodes = num_virtual_nodes
        self.virtual_node_embedding = (torch.nn.Parameter(torch.zeros(num_virtual_nodes, channels))
                                       if num_virtual_nodes else None)
        self.virtual_nodes = torch.nn.ModuleList([
            VirtualNode(channels, num_virtual_nodes, dropout, vn_hidden_factor, vn_residual)
            for _ in range(num_layers - 1 if num_virtual_nodes else 0)])
        self.head = PredictionHead(channels, out_channels, head_layers, level, pool, dropout, act, head_style)

    def encode_edges(self, edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        """The raw ``edge_attr`` with per-layer encoders (each layer embeds it), else the shared embedding."""
        return edge_attr if self.edge_encoders is not None else super().encode_edges(edge_attr)

    def _output(self, i: int, out: Tensor) -> Tensor:
        r""":math:`\mathbf{o}_l` from the conv output (see the class docstring), before the dropout."""
        if self.norms is not None:
            out = self.norms[i](out)
        last = i == len(self.convs) - 1
        return self.act(out) if self.act_after and not (self.block == "ogb" and last) else out

    def _residual(self, x: Tensor, out: Tensor) -> Tensor:
        out = dropout(out, p=self.dropout, training=self.training)
        return x + out if self.residual else out

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        state = (self.virtual_node_embedding.expand(num_graphs, -1, -1) if self.num_virtual_nodes else None)
        for i, conv in enumerate(self.convs):
            h_in = h + state.mean(dim=1)[batch] if state is not None else h          # VirtualNode.broadcast
            e_in = self.edge_encoders[i](edge_attr) if self.edge_encoders is not None else edge_attr
            out, edge_update = conv(h_in, edge_index, e_in)
            h = self._residual(h_in, self._output(i, out))
            if edge_update is not None:
                edge_attr = self._residual(edge_attr, edge_update)
            if i < len(self.virtual_nodes):
                state = self.virtual_nodes[i].update(h_in, state, batch)
        return h
