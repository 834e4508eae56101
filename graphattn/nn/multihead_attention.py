r"""Multi-head attention on an attention graph, with :class:`torch.nn.MultiheadAttention`'s parameters."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from ..functional import aggregate, as_attention_graph, dropout, edge_scores, graph_attention, normalize

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

    Optional masks (used by :mod:`graphattn.sparsify`; both default to ``None``, the plain layer):
    ``edge_mask`` ``[E]`` (user edge order) re-weights the edges,
    :math:`a_{ij} = m_{ij} e^{s_{ij}} / \sum_{j'} m_{ij'} e^{s_{ij'}}` (rows with no kept edge
    give 0); ``head_mask`` ``[H]`` scales each head's output before ``out_proj``. Both are
    differentiable, so they carry straight-through gradients. :meth:`prune_heads` removes heads
    from the projections, so that the engine runs with fewer heads.

    ``queries`` ``[M]`` (row indices) computes the output of these rows only (for a model that reads a few rows
    of its last layer, such as a ``<CLS>`` token): ``graph`` is then an attention graph from the :math:`N` rows
    (sources: keys and values) to the :math:`M` query rows (destinations), and with the query rows' in-edges of
    the full graph the result equals the rows ``queries`` of the full output.

    Shapes:
        - **input:** ``x`` ``[N, C]``, ``graph`` (anything :func:`~graphattn.graph_attention` takes),
          ``edge_mask`` ``[E]``, ``head_mask`` ``[H]``, ``queries`` ``[M]``.
        - **output:** ``[N, C]`` (``[M, C]`` with ``queries``).
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

    @torch.no_grad()
    def prune_heads(self, keep: Tensor) -> None:
        """Keeps only the heads ``keep`` (indices, at least one): slices the rows of ``in_proj``
        and the columns of ``out_proj``, so the attention runs with ``len(keep)`` heads."""
        keep = torch.as_tensor(keep, dtype=torch.long, device=self.in_proj_weight.device).unique()
        if keep.numel() == 0 or int(keep.min()) < 0 or int(keep.max()) >= self.num_heads:
            raise ValueError(f"keep must hold 1..{self.num_heads} head indices in [0, {self.num_heads})")
        d = self.in_proj_weight.size(0) // (3 * self.num_heads)
        cols = (keep.view(-1, 1) * d + torch.arange(d, device=keep.device)).view(-1)      # [H' d]
        rows = torch.cat([cols + i * self.num_heads * d for i in range(3)])
        self.in_proj_weight = torch.nn.Parameter(self.in_proj_weight[rows].clone())
        if self.in_proj_bias is not None:
            self.in_proj_bias = torch.nn.Parameter(self.in_proj_bias[rows].clone())
        out = NonDynamicallyQuantizableLinear(cols.numel(), self.embed_dim, bias=self.out_proj.bias is not None)
        out = out.to(self.out_proj.weight)
        out.weight.copy_(self.out_proj.weight[:, cols])
        if self.out_proj.bias is not None:
            out.bias.copy_(self.out_proj.bias)
        self.out_proj, self.num_heads = out, keep.numel()

    def forward(self, x: Tensor, graph: Any, edge_mask: Optional[Tensor] = None,
                head_mask: Optional[Tensor] = None, queries: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.embed_dim:
            raise ValueError(f"x must have shape [N, {self.embed_dim}], got {list(x.shape)}")
        if head_mask is not None and head_mask.shape != (self.num_heads,):
            raise ValueError(f"head_mask must have shape [{self.num_heads}], got {list(head_mask.shape)}")
        n, h = x.size(0), self.num_heads
        if queries is None:
            q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(n, 3, h, -1).unbind(1)
        else:
            q, k, v = self._project_queries(x, queries)
        m = q.size(0)
        p = self.dropout if self.training else 0.0
        if edge_mask is None:
            out = graph_attention(q, k, v, graph, dropout=p)
        else:
            out = self._masked_attention(q, k, v, as_attention_graph(graph, m, n), edge_mask, p)
        if head_mask is not None:
            out = out * head_mask.to(out.dtype).view(1, h, 1)
        return self.out_proj(out.reshape(m, -1))

    def _project_queries(self, x: Tensor, queries: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries ``[M, H, d]`` of the rows ``queries`` only; keys and values ``[N, H, d]`` of every row."""
        if queries.dim() != 1 or queries.dtype.is_floating_point:
            raise ValueError(f"queries must be a 1-D integer tensor of row indices, got {queries.dtype} "
                             f"{list(queries.shape)}")
        split, bias, h = self.in_proj_weight.size(0) // 3, self.in_proj_bias, self.num_heads
        q = F.linear(x.index_select(0, queries), self.in_proj_weight[:split], None if bias is None else bias[:split])
        k, v = F.linear(x, self.in_proj_weight[split:], None if bias is None else bias[split:]).view(
            x.size(0), 2, h, -1).unbind(1)
        return q.view(queries.numel(), h, -1), k, v

    @staticmethod
    def _masked_attention(q: Tensor, k: Tensor, v: Tensor, graph: Any, edge_mask: Tensor, p: float) -> Tensor:
        """The edge-weighted softmax of :func:`~graphattn.functional.normalize` (``edge_weight``), then
        dropout and aggregation."""
        if edge_mask.shape != (graph.num_edges,):
            raise ValueError(f"edge_mask must have shape [{graph.num_edges}], got {list(edge_mask.shape)}")
        w = normalize(edge_scores(q, k, graph), graph, edge_weight=edge_mask.to(q.dtype))
        return aggregate(dropout(w, p=p, training=p > 0), v, graph)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.embed_dim}, num_heads={self.num_heads})"
