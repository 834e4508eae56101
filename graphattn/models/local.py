r"""Local message-passing layers of the ready-made models (GINE, OGB's GIN, GatedGCN, ResGatedGCN, GCN, OGB's
GCN) with one signature."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn import GCNConv, GINEConv, ResGatedGraphConv
from torch_geometric.nn.resolver import activation_resolver

from ..nn.dropout import Dropout
from ..nn.gated_gcn import GatedGCNLayer
from ..nn.ogb_gcn_conv import OGBGCNConv

__all__ = ["LocalConv", "LOCAL_CONVS", "EDGE_AWARE_LOCAL_CONVS", "EDGE_UPDATING_LOCAL_CONVS"]

LOCAL_CONVS = ("gine", "gin", "gatedgcn", "resgatedgcn", "gcn", "ogb_gcn")
#: The local layers that read edge features (GCN ignores them; OGB's GIN and GCN also run without).
EDGE_AWARE_LOCAL_CONVS = ("gine", "gin", "gatedgcn", "resgatedgcn", "ogb_gcn")
#: The local layers that also compute new edge features (passed on to the next layer).
EDGE_UPDATING_LOCAL_CONVS = ("gatedgcn",)


class LocalConv(torch.nn.Module):
    r"""A message-passing layer ``[N, C] -> ([N, C], [E, C] or None)`` called as ``conv(x, edge_index, edge_attr)``.

    * ``"gine"``: :class:`~torch_geometric.nn.GINEConv` with :math:`\epsilon = 0` fixed and MLP
      Linear-:math:`\sigma`-(Dropout)-Linear of width :math:`C` (GraphGPS's GINE, in GPS and in its
      LRGB ``GINEConvLayer``); edge features of width :math:`C` enter every message.
    * ``"gin"``: OGB's ``GINConv`` (``examples/graphproppred/mol/conv.py``, GIN with bond features):
      :math:`\operatorname{MLP}((1 + \epsilon)\mathbf{x}_i + \sum_j \operatorname{ReLU}(\mathbf{x}_j
      + \mathbf{e}_{ij}))`, :math:`\epsilon` learnable (initially 0), MLP
      Linear(:math:`C, 2C`)-BN-ReLU-Linear(:math:`2C, C`). Without edge features (``edge_attr=None``)
      :math:`\mathbf{e}_{ij} = 0`, as GraphTrans's TU models (its edge encoder returns 0).
    * ``"gatedgcn"``: Bresson & Laurent's GatedGCN as in GraphGPS
      (:class:`~graphattn.nn.GatedGCNLayer`, built without its dropout and residual): returns
      :math:`\operatorname{ReLU}(\operatorname{BN}(\hat{\mathbf{x}}))` and *updates the edge features*
      to :math:`\operatorname{ReLU}(\operatorname{BN}(\hat{\mathbf{e}}))`. The model adds dropout and the
      residual to both (for the edges in GPS: :meth:`~graphattn.nn.GPSLayer.forward_with_edges`; GraphGPS
      does both inside the layer; the result is the same).
    * ``"resgatedgcn"``: PyG's :class:`~torch_geometric.nn.ResGatedGraphConv` with ``edge_dim=C``
      (unnormalised gates, edge features read but not updated).
    * ``"gcn"``: :class:`~torch_geometric.nn.GCNConv` (edge features are ignored).
    * ``"ogb_gcn"``: OGB's GCN (:class:`~graphattn.nn.OGBGCNConv`: a root embedding, degrees plus one),
      edge features optional.

    Args:
        kind: one of :data:`LOCAL_CONVS`.
        channels: :math:`C`.
        act: activation :math:`\sigma` of the GINE MLP (a PyG activation resolver name).
        dropout: dropout between the two linear layers of the GINE MLP.

    Forward: ``x`` ``[N, C]``, ``edge_index`` ``[2, E]``, ``edge_attr`` ``[E, C]`` (edge-aware kinds).
    Returns ``(x', e')``: the new node features ``[N, C]`` and, for an edge-updating kind
    (:data:`EDGE_UPDATING_LOCAL_CONVS`), the new edge features ``[E, C]`` before dropout and residual,
    else ``None`` (the edge features stay as they are). :class:`~graphattn.nn.GPSLayer` takes a conv
    with this output (:meth:`~graphattn.nn.GPSLayer.forward_with_edges`).
    """

    def __init__(self, kind: str, channels: int, act: str = "relu", dropout: float = 0.0):
        super().__init__()
        if kind not in LOCAL_CONVS:
            raise ValueError(f"local conv must be one of {LOCAL_CONVS}, got {kind!r}")
        self.kind = kind
        if kind == "gine":
            drop = [Dropout(dropout)] if dropout > 0 else []
            mlp = torch.nn.Sequential(torch.nn.Linear(channels, channels), activation_resolver(act), *drop,
                                      torch.nn.Linear(channels, channels))
            self.conv = GINEConv(mlp)
        elif kind == "gin":
            mlp = torch.nn.Sequential(torch.nn.Linear(channels, 2 * channels), torch.nn.BatchNorm1d(2 * channels),
                                      torch.nn.ReLU(), torch.nn.Linear(2 * channels, channels))
            self.conv = GINEConv(mlp, train_eps=True)
        elif kind == "gatedgcn":
            self.conv = GatedGCNLayer(channels, channels, dropout=0.0, residual=False)
        elif kind == "resgatedgcn":
            self.conv = ResGatedGraphConv(channels, channels, edge_dim=channels)
        elif kind == "gcn":
            self.conv = GCNConv(channels, channels)
        else:
            self.conv = OGBGCNConv(channels)

    @property
    def updates_edges(self) -> bool:
        """Whether the layer computes new edge features (the second output is not ``None``)."""
        return self.kind in EDGE_UPDATING_LOCAL_CONVS

    @property
    def normalizes(self) -> bool:
        """Whether the output has already passed a norm and an activation (GatedGCN's BN and ReLU)."""
        return self.kind == "gatedgcn"

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_attr: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        if self.updates_edges:
            return self.conv(x, edge_index, edge_attr)
        if self.kind in EDGE_AWARE_LOCAL_CONVS:
            if edge_attr is None and self.kind == "gin":        # e_ij = 0: a [E, C] view of one zero
                edge_attr = x.new_zeros(()).expand(edge_index.size(1), x.size(-1))
            return self.conv(x, edge_index, edge_attr), None
        return self.conv(x, edge_index), None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.kind}, {self.conv})"
