r"""Multi-head attention on an attention graph, with :class:`torch.nn.MultiheadAttention`'s parameters."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from ..functional import graph_attention

__all__ = ["MultiheadGraphAttention"]


class MultiheadGraphAttention(torch.nn.Module):
    r"""Self-attention of every node over its in-edges of an attention graph:

    .. math::
        [\mathbf{q}, \mathbf{k}, \mathbf{v}] = \mathbf{X} \mathbf{W}_{in}^{\top} + \mathbf{b}_{in},\qquad
        \mathbf{o}_i = \mathbf{W}_{out} \big\Vert_{h} \sum_{j \in \mathcal N(i)}
        \operatorname{softmax}_j\!\Big(\tfrac{\langle \mathbf{q}_{i,h}, \mathbf{k}_{j,h}\rangle}{\sqrt{d}}\Big)
        \mathbf{v}_{j,h} + \mathbf{b}_{out}

    With :meth:`~graphattn.AttentionGraph.full_per_graph` as the graph this is
    :class:`torch.nn.MultiheadAttention` applied to every graph of a batch separately, without
    padding. Parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and their
    initialisation are those of :class:`torch.nn.MultiheadAttention`, so its ``state_dict`` loads.

    Args:
        embed_dim: channels :math:`C` (divisible by ``num_heads``).
        num_heads: number of heads :math:`H`.
        dropout: dropout probability of the attention weights (training only).
        bias: learn the input and output biases.

    Shapes:
        - **input:** ``x`` ``[N, C]``, ``graph`` (anything :func:`~graphattn.graph_attention` takes).
        - **output:** ``[N, C]``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = torch.nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            torch.nn.init.constant_(self.in_proj_bias, 0.0)
            torch.nn.init.constant_(self.out_proj.bias, 0.0)

    def reset_parameters(self) -> None:
        self.out_proj.reset_parameters()
        self._reset_parameters()

    def forward(self, x: Tensor, graph: Any) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.embed_dim:
            raise ValueError(f"x must have shape [N, {self.embed_dim}], got {list(x.shape)}")
        n, h = x.size(0), self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(n, 3, h, -1).unbind(1)
        out = graph_attention(q, k, v, graph, dropout=self.dropout if self.training else 0.0)
        return self.out_proj(out.reshape(n, self.embed_dim))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.embed_dim}, num_heads={self.num_heads})"
