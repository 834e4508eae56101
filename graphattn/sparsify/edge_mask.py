r"""EdgeMask: learned per-graph top-k selection of the edges of an attention graph."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..graph import AttentionGraph
from .topk import group_topk, group_topk_mask

__all__ = ["EdgeMask", "BilinearEdgeScore"]


class BilinearEdgeScore(torch.nn.Module):
    r""":math:`s_{ij} = \langle \mathbf{A}\mathbf{h}_i, \mathbf{B}\mathbf{h}_j\rangle / \sqrt{r}` for every edge
    :math:`j \to i` of an attention graph (``[E]``, user edge order)."""

    def __init__(self, channels: int, rank: int):
        super().__init__()
        self.rank = rank
        self.query = torch.nn.Linear(channels, rank)
        self.key = torch.nn.Linear(channels, rank, bias=False)

    def forward(self, h: Tensor, graph: AttentionGraph) -> Tensor:
        src, dst = graph.edge_index
        return (self.query(h)[dst] * self.key(h)[src]).sum(-1) * self.rank ** -0.5


class EdgeMask(torch.nn.Module):
    r"""Scores every edge :math:`j \to i` of an attention graph with a rank-:math:`r` bilinear form
    (:class:`BilinearEdgeScore`) and keeps the top :math:`\lceil \rho\, E_g\rceil` edges of every
    graph :math:`g` (the graph of the destination node), among the ``valid`` edges.

    ``forward`` gives the straight-through Gumbel-softmax mask ``[E]`` (user edge order),
    ``select`` the boolean selection of the exported model.

    Args:
        channels: node width :math:`C`; ratio: keep ratio :math:`\rho`; rank: :math:`r`; tau: temperature.
    """

    def __init__(self, channels: int, ratio: float, rank: int = 8, tau: float = 1.0):
        super().__init__()
        self.ratio, self.tau = ratio, tau
        self.score = BilinearEdgeScore(channels, rank)

    def forward(self, h: Tensor, graph: AttentionGraph, batch: Tensor, num_graphs: int,
                valid: Optional[Tensor] = None) -> Tensor:
        return group_topk_mask(self.score(h, graph), batch[graph.edge_index[1]], num_graphs, self.ratio,
                               self.tau, valid, training=self.training)

    @torch.no_grad()
    def select(self, h: Tensor, graph: AttentionGraph, batch: Tensor, num_graphs: int,
               valid: Optional[Tensor] = None) -> Tensor:
        return group_topk(self.score(h, graph) / self.tau, batch[graph.edge_index[1]], num_graphs,
                          self.ratio, valid)
