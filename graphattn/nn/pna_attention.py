r"""PNAAttention: graph-aware isomorphic attention with PNA aggregators (Buehler 2025)."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..functional import aggregate, attention_weights
from ._edge_ops import neighbour_max, segment_sum
from ._isomorphic import AttentionAdjacency, HeadwiseMLP
from ._message_passing import EngineMessagePassing

__all__ = ["PNAAttention"]

AGGREGATORS = ("sum", "mean", "max", "std")
SCALERS = ("identity", "amplification", "attenuation")


class PNAAttention(EngineMessagePassing):
    r"""PNA-Attention of `"Graph-Aware Isomorphic Attention for Adaptive Dynamics in Transformers"
    <https://arxiv.org/abs/2501.02393>`_: PNA aggregators over the attention-weighted messages
    :math:`\mathbf{m}_{ij,h} = a_{ij,h}\, \mathbf{x}_{j,h}` (:math:`a` as in :class:`GINAttention`,
    :math:`d_i` the in-degree of :math:`i`):

    .. math::
        \text{sum}_i = \sum_j \mathbf{m}_{ij},\quad \text{mean}_i = \text{sum}_i / d_i,\quad
        \text{max}_i = \max_{j \in \mathcal N(i)} \mathbf{m}_{ij},\quad
        \text{std}_i = \sqrt{\operatorname{relu}\big(\textstyle\sum_j \mathbf{m}_{ij}^2 / d_i
        - \text{mean}_i^2\big) + 10^{-5}}

    (the max runs over the neighbours :math:`j`, not over :math:`i` itself as in the released
    code), each scaled by the PNA degree scalers identity, amplification
    :math:`\log(d_i + 1)/\delta` and attenuation :math:`\delta / \log(d_i + 1)` (with
    :math:`\delta` the mean :math:`\log(d + 1)` of the training graphs, from the ``deg``
    histogram as in PyG's ``PNAConv``), concatenated per head and mixed by a per-head MLP
    (:class:`GINAttention`'s), then :math:`\mathbf{W}_O`.

    Sum, mean and std are engine SpMMs (weights :math:`a` and :math:`a^2`, inputs
    :math:`\mathbf{x}` and :math:`\mathbf{x}^2`); max selects its edge in chunks. No
    :math:`E \times H \times d` tensor is kept. In PyG's explain mode or with message hooks the
    messages :math:`\mathbf{m}_{ij}` go through ``propagate`` instead and the four aggregators are
    computed from them (:meth:`aggregate`), so that edge masks reach every aggregator.

    Args:
        channels, heads, mlp_ratio, dropout, temperature, value_proj: as :class:`GINAttention`.
        aggregators: subset of ``("sum", "mean", "max", "std")``.
        scalers: subset of ``("identity", "amplification", "attenuation")``.
        deg: in-degree histogram of the training graphs (``deg[d]`` = number of nodes with
            in-degree ``d``); ``None``: :math:`\delta = 1`.

    Forward:
        ``x`` ``[N, C]``, ``edge_index`` (or a sparse adjacency / ``AttentionGraph``) -> ``[N, C]``.
    """

    def __init__(self, channels: int, heads: int = 1, aggregators: Sequence[str] = AGGREGATORS,
                 scalers: Sequence[str] = ("identity",), deg: Optional[Tensor] = None, mlp_ratio: int = 1,
                 dropout: float = 0.0, temperature: float = 1.0, value_proj: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        bad = [a for a in aggregators if a not in AGGREGATORS] + [s for s in scalers if s not in SCALERS]
        if bad or not aggregators or not scalers:
            raise ValueError(f"aggregators must be a non-empty subset of {AGGREGATORS} and scalers of "
                             f"{SCALERS}; got {list(aggregators)}, {list(scalers)}")
        self.channels, self.heads = channels, heads
        self.aggregators, self.scalers = tuple(aggregators), tuple(scalers)
        if deg is None:
            self.avg_log_deg = 1.0
        else:
            counts = deg.double()
            self.avg_log_deg = float((counts * torch.log(torch.arange(counts.numel(), dtype=torch.double) + 1)).sum()
                                     / counts.sum().clamp(min=1))
        self.attn = AttentionAdjacency(channels, heads, temperature, value_proj)
        d = channels // heads
        width = len(self.aggregators) * len(self.scalers) * d
        self.mlp = HeadwiseMLP(heads, width, mlp_ratio * d, d, dropout)
        self.o_proj = torch.nn.Linear(channels, channels)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.attn.reset_parameters()
        self.mlp.reset_parameters()
        self.o_proj.reset_parameters()

    def forward(self, x: Tensor, edge_index: Any) -> Tensor:
        q, k, v, graph = self.attn(x, edge_index)
        a = attention_weights(q, k, graph)                                 # [E, H], user order
        deg = graph.in_degree().to(v.dtype).view(-1, 1, 1)
        if self.instrumented:                        # explain mode / hooks: aggregate() below
            h = self.propagate_messages(a, v, graph)
        else:
            second = aggregate(a * a, v * v, graph) if "std" in self.aggregators else None
            h = self._combine(aggregate(a, v, graph), second,
                              neighbour_max(a, v, graph) if "max" in self.aggregators else None, deg)
        log_deg = torch.log(deg + 1)
        scaled = {"identity": h, "amplification": h * (log_deg / self.avg_log_deg),
                  "attenuation": h * (self.avg_log_deg / log_deg.clamp(min=math.log(2)))}
        h = torch.cat([scaled[name] for name in self.scalers], dim=-1)
        return self.o_proj(self.mlp(h).reshape(x.size(0), -1))

    def _combine(self, total: Tensor, second: Optional[Tensor], maximum: Optional[Tensor], deg: Tensor) -> Tensor:
        """The aggregators ``[N, H, A*d]`` from the sum, the sum of squares and the max of the messages."""
        mean = total / deg.clamp(min=1)
        out = {"sum": total, "mean": mean, "max": maximum}
        if second is not None:
            out["std"] = torch.sqrt(torch.relu(second / deg.clamp(min=1) - mean * mean) + 1e-5)
        return torch.cat([out[name] for name in self.aggregators], dim=-1)

    def aggregate(self, inputs: Tensor, index: Tensor, dim_size: Optional[int] = None) -> Tensor:
        """PyG's path: the PNA aggregators of the (possibly explained) messages ``[E, H, d]``."""
        deg = segment_sum(torch.ones_like(index, dtype=inputs.dtype), index, dim_size).view(-1, 1, 1)
        maximum = None
        if "max" in self.aggregators:                # over neighbours only; 0 without in-edges
            maximum = inputs.new_full((dim_size,) + inputs.shape[1:], float("-inf")).scatter_reduce(
                0, index.view(-1, 1, 1).expand_as(inputs), inputs, "amax")
            maximum = torch.where(deg > 0, maximum, torch.zeros_like(maximum))
        second = segment_sum(inputs * inputs, index, dim_size) if "std" in self.aggregators else None
        return self._combine(segment_sum(inputs, index, dim_size), second, maximum, deg)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"aggregators={list(self.aggregators)}, scalers={list(self.scalers)})")
