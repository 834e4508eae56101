r"""TokenMask: learned per-graph top-k selection of the tokens that take part in global attention."""
from __future__ import annotations

import torch
from torch import Tensor

from .topk import group_topk, group_topk_mask

__all__ = ["TokenMask"]


class TokenMask(torch.nn.Module):
    r"""Scores every token, :math:`s_i = \mathbf{w}^\top \mathbf{h}_i + b`, and keeps the top
    :math:`k_g = \lceil r\, n_g \rceil` of every graph :math:`g` of the batch (no padding).

    ``forward`` gives the straight-through Gumbel-softmax mask (training: noisy; evaluation:
    deterministic), ``select`` the boolean selection of the exported model (the evaluation
    mask without its autograd graph).

    Args:
        channels: token width :math:`C`; ratio: keep ratio :math:`r`; tau: temperature.

    Shapes: ``h`` ``[N, C]``, ``batch`` ``[N]`` -> ``[N]``.
    """

    def __init__(self, channels: int, ratio: float, tau: float = 1.0):
        super().__init__()
        self.ratio, self.tau = ratio, tau
        self.score = torch.nn.Linear(channels, 1)

    def forward(self, h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return group_topk_mask(self.score(h).squeeze(-1), batch, num_graphs, self.ratio, self.tau,
                               training=self.training)

    @torch.no_grad()
    def select(self, h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        return group_topk(self.score(h).squeeze(-1) / self.tau, batch, num_graphs, self.ratio)
