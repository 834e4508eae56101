r"""Shared parts of the graph-aware isomorphic attention layers (:class:`GINAttention`,
:class:`PNAAttention`): the attention adjacency and the per-head MLP."""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..functional import as_attention_graph, dropout
from ..graph import AttentionGraph

__all__ = ["AttentionAdjacency", "HeadwiseMLP"]


class AttentionAdjacency(torch.nn.Module):
    r"""Queries, keys and values of the isomorphic attention layers.

    :math:`\mathbf{q}_{i,h} = \alpha_h (\mathbf{W}_Q \mathbf{x}_i)_h / T`,
    :math:`\mathbf{k}_{j,h} = (\mathbf{W}_K \mathbf{x}_j)_h`, scores
    :math:`\langle \mathbf{q}_i, \mathbf{k}_j\rangle / \sqrt{d}` on the edges of the graph, with a
    learnable sharpening :math:`\alpha_h` (init 1) and a fixed temperature :math:`T`; values are the
    head slices of :math:`\mathbf{x}` (as in the released code) or of :math:`\mathbf{W}_V \mathbf{x}`
    with ``value_proj=True``.
    """

    def __init__(self, channels: int, heads: int, temperature: float = 1.0, value_proj: bool = False,
                 bias: bool = False):
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.channels, self.heads, self.temperature = channels, heads, temperature
        self.q_proj = torch.nn.Linear(channels, channels, bias=bias)
        self.k_proj = torch.nn.Linear(channels, channels, bias=bias)
        self.v_proj = torch.nn.Linear(channels, channels, bias=bias) if value_proj else None
        self.alpha = torch.nn.Parameter(torch.ones(heads))

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            if lin is not None:
                lin.reset_parameters()
        torch.nn.init.ones_(self.alpha)

    def forward(self, x: Tensor, graph: Any) -> Tuple[Tensor, Tensor, Tensor, AttentionGraph]:
        """``x`` ``[N, C]`` -> ``(q, k, v)`` each ``[N, H, d]`` and the :class:`AttentionGraph`."""
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {list(x.shape)}")
        n, h = x.size(0), self.heads
        graph = as_attention_graph(graph, n, n)
        q = self.q_proj(x).view(n, h, -1) * (self.alpha / self.temperature)[:, None]
        k = self.k_proj(x).view(n, h, -1)
        v = (self.v_proj(x) if self.v_proj is not None else x).view(n, h, -1)
        return q, k, v, graph


class HeadwiseMLP(torch.nn.Module):
    r"""One MLP per head, batched: ``Linear(in -> hidden) -> Dropout -> RMSNorm -> SiLU -> Linear(hidden -> out)``
    on ``[N, H, in]`` -> ``[N, H, out]`` (weights ``[H, in, hidden]``, ``[H, hidden, out]``)."""

    def __init__(self, heads: int, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.empty(heads, in_dim, hidden))
        self.b1 = torch.nn.Parameter(torch.empty(heads, hidden))
        self.norm_weight = torch.nn.Parameter(torch.empty(heads, hidden))
        self.w2 = torch.nn.Parameter(torch.empty(heads, hidden, out_dim))
        self.b2 = torch.nn.Parameter(torch.empty(heads, out_dim))
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w, b in ((self.w1, self.b1), (self.w2, self.b2)):
            bound = w.size(1) ** -0.5          # torch.nn.Linear's default range, per head
            torch.nn.init.uniform_(w, -bound, bound)
            torch.nn.init.uniform_(b, -bound, bound)
        torch.nn.init.ones_(self.norm_weight)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.einsum("nhi,hio->nho", x, self.w1) + self.b1
        h = dropout(h, p=self.dropout, training=self.training)
        h = F.rms_norm(h, (h.size(-1),)) * self.norm_weight
        return torch.einsum("nhi,hio->nho", F.silu(h), self.w2) + self.b2
