r"""Local message-passing layers of the ready-made models (GINE, GatedGCN, GCN) with one signature."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn import GCNConv, GINEConv, ResGatedGraphConv

__all__ = ["LocalConv", "LOCAL_CONVS", "EDGE_AWARE_LOCAL_CONVS"]

LOCAL_CONVS = ("gine", "gatedgcn", "gcn")
#: The local layers that read edge features (GCN ignores them).
EDGE_AWARE_LOCAL_CONVS = ("gine", "gatedgcn")


class LocalConv(torch.nn.Module):
    r"""A PyG message-passing layer ``[N, C] -> [N, C]`` called as ``conv(x, edge_index, edge_attr)``.

    * ``"gine"``: :class:`~torch_geometric.nn.GINEConv` with MLP :math:`C \to C \to C` (ReLU);
      edge features of width :math:`C` enter every message.
    * ``"gatedgcn"``: :class:`~torch_geometric.nn.ResGatedGraphConv` with ``edge_dim=C`` (edge
      features in the gates; they are not updated, unlike Bresson & Laurent's GatedGCN).
    * ``"gcn"``: :class:`~torch_geometric.nn.GCNConv` (edge features are ignored).
    """

    def __init__(self, kind: str, channels: int):
        super().__init__()
        if kind not in LOCAL_CONVS:
            raise ValueError(f"local conv must be one of {LOCAL_CONVS}, got {kind!r}")
        self.kind = kind
        if kind == "gine":
            mlp = torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.ReLU(),
                                      torch.nn.Linear(channels, channels))
            self.conv = GINEConv(mlp, train_eps=True)
        elif kind == "gatedgcn":
            self.conv = ResGatedGraphConv(channels, channels, edge_dim=channels)
        else:
            self.conv = GCNConv(channels, channels)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None) -> Tensor:
        if self.kind in EDGE_AWARE_LOCAL_CONVS:
            return self.conv(x, edge_index, edge_attr)
        return self.conv(x, edge_index)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.kind}, {self.conv})"
