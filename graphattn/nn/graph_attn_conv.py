r"""GraphAttnConv: PyG's :class:`~torch_geometric.nn.conv.TransformerConv` on the engine."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn.dense.linear import Linear

from ..functional import as_attention_graph, attention_weights, graph_attention
from ..graph import AttentionGraph
from ._message_passing import EngineMessagePassing

__all__ = ["GraphAttnConv"]


class GraphAttnConv(EngineMessagePassing):
    r"""The graph transformer operator of `"Masked Label Prediction" <https://arxiv.org/abs/2009.03509>`_,
    a drop-in replacement for PyG's ``TransformerConv`` (same arguments, parameter names and
    outputs; a ``TransformerConv`` ``state_dict`` loads as is):

    .. math::
        \mathbf{x}'_i = \mathbf{W}_1 \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} \alpha_{i,j}
        \left(\mathbf{W}_2 \mathbf{x}_j + \mathbf{W}_6 \mathbf{e}_{ij}\right),\qquad
        \alpha_{i,j} = \operatorname{softmax}_j\!\left(\frac{(\mathbf{W}_3\mathbf{x}_i)^{\top}
        (\mathbf{W}_4\mathbf{x}_j + \mathbf{W}_6 \mathbf{e}_{ij})}{\sqrt{d}}\right)

    with the optional gated root weight (``beta=True``)
    :math:`\mathbf{x}'_i = \beta_i \mathbf{W}_1 \mathbf{x}_i + (1 - \beta_i) \mathbf{m}_i`,
    :math:`\beta_i = \sigma(\mathbf{w}_5^{\top}[\mathbf{W}_1 \mathbf{x}_i, \mathbf{m}_i,
    \mathbf{W}_1 \mathbf{x}_i - \mathbf{m}_i])`.

    Attention runs as one fused engine call (:func:`~graphattn.graph_attention`, dropout included:
    a counter-based mask regenerated in the backward). The projected edge features
    :math:`\mathbf{W}_6 \mathbf{e}_{ij}` ``[E, H, C]`` enter it as ``edge_k`` and ``edge_v``: the kernels
    add them to the key and the value of each edge on the fly, so no per-edge key or message is
    formed (PyG forms four :math:`E \times H \times C` tensors, and their gradients).

    Args:
        in_channels: size of each input sample, or a ``(source, destination)`` tuple for
            bipartite graphs (``-1`` for lazy initialisation).
        out_channels: size of each output sample per head.
        heads: number of attention heads.
        concat: concatenate the heads (else average them).
        beta: gated combination of the root and the aggregated message.
        dropout: dropout probability of the attention weights (training only).
        edge_dim: edge feature size (``None``: no edge features).
        bias: learn additive biases in the projections.
        root_weight: add the transformed root node features.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`, ``edge_index`` ``[2, E]`` or a
          sparse ``[N_dst, N_src]`` adjacency or an :class:`~graphattn.AttentionGraph`, edge
          features :math:`(|\mathcal{E}|, D)` *(optional)*.
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot C)` (``concat``) or :math:`(|\mathcal{V}_t|, C)`;
          with ``return_attention_weights`` also ``(edge_index, alpha [E, H])`` as PyG returns it: for a
          ``torch.sparse`` adjacency ``(adj, alpha)`` with ``alpha`` in row-major (coalesced) order,
          for a ``SparseTensor`` the adjacency with ``alpha`` as values.
    """

    def __init__(self, in_channels: Union[int, Tuple[int, int]], out_channels: int, heads: int = 1,
                 concat: bool = True, beta: bool = False, dropout: float = 0.0,
                 edge_dim: Optional[int] = None, bias: bool = True, root_weight: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if heads < 1 or out_channels < 1:
            raise ValueError(f"heads and out_channels must be positive, got {heads} and {out_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.beta = beta and root_weight
        self.root_weight = root_weight
        self.concat = concat
        self.dropout = dropout
        self.edge_dim = edge_dim
        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)
        self.lin_key = Linear(in_channels[0], heads * out_channels, bias=bias)
        self.lin_query = Linear(in_channels[1], heads * out_channels, bias=bias)
        self.lin_value = Linear(in_channels[0], heads * out_channels, bias=bias)
        self.lin_edge = Linear(edge_dim, heads * out_channels, bias=False) if edge_dim is not None else None
        width = heads * out_channels if concat else out_channels
        self.lin_skip = Linear(in_channels[1], width, bias=bias)
        self.lin_beta = Linear(3 * width, 1, bias=False) if self.beta else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin_key, self.lin_query, self.lin_value, self.lin_edge, self.lin_skip, self.lin_beta):
            if lin is not None:
                lin.reset_parameters()

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]], edge_index: Any,
                edge_attr: Optional[Tensor] = None,
                return_attention_weights: Optional[bool] = None) -> Union[Tensor, Tuple[Tensor, Any]]:
        H, C = self.heads, self.out_channels
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if self.lin_edge is None and edge_attr is not None:
            raise ValueError("edge_attr was given but the layer has no edge_dim")
        graph = as_attention_graph(edge_index, x_dst.size(0), x_src.size(0))
        if self.lin_edge is not None and edge_attr is None:
            edge_attr = graph.edge_weight            # edge features carried as the adjacency's values
            if edge_attr is None:
                raise ValueError(f"edge_attr [E, {self.edge_dim}] is required (edge_dim={self.edge_dim})")
        query, key, value, x_r = self._project(x_src, x_dst)
        need_weights = isinstance(return_attention_weights, bool)
        p = self.dropout if self.training else 0.0

        edge_value = None
        if self.lin_edge is not None:
            edge_attr = edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr
            if edge_attr.size(0) != graph.num_edges:
                raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but the graph has {graph.num_edges} edges")
            edge_value = self.lin_edge(edge_attr).view(-1, H, C)       # W_6 e_ij, the key and the value term
        if self.instrumented:          # explain mode / hooks: the messages go through PyG's propagate
            alpha = attention_weights(query, key, graph, edge_k=edge_value)
            out = self.propagate_messages(alpha, value, graph, edge_value, p)
        else:
            res = graph_attention(query, key, value, graph, edge_k=edge_value, edge_v=edge_value, dropout=p,
                                  return_weights=need_weights)
            out, alpha = res if need_weights else (res, None)

        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if x_r is not None:
            if self.lin_beta is not None:
                beta = self.lin_beta(torch.cat([out, x_r, out - x_r], dim=-1)).sigmoid()
                out = beta * x_r + (1 - beta) * out
            else:
                out = out + x_r
        if not need_weights:
            return out
        if isinstance(edge_index, Tensor):              # edge_index or torch.sparse adjacency, as PyG
            return out, (edge_index, alpha)
        if isinstance(edge_index, AttentionGraph):
            return out, (edge_index.edge_index, alpha)
        return out, edge_index.set_value(alpha, layout="coo")      # torch_sparse.SparseTensor, as PyG

    def _project(self, x_src: Tensor, x_dst: Tensor) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        r"""Query, key and value ``[N, H, C]`` and the root term :math:`\mathbf{W}_1 \mathbf{x}_i` (``None``
        without ``root_weight``). When sources and destinations are the same features, the four
        projections run as one GEMM on the concatenated weights (the parameters stay separate, as in
        PyG), which costs less than four small GEMMs and their gradient sums."""
        H, C = self.heads, self.out_channels
        lins = [self.lin_query, self.lin_key, self.lin_value] + ([self.lin_skip] if self.root_weight else [])
        if x_src is x_dst and not any(isinstance(lin.weight, UninitializedParameter) for lin in lins):
            bias = None if lins[0].bias is None else torch.cat([lin.bias for lin in lins])
            out = F.linear(x_dst, torch.cat([lin.weight for lin in lins]), bias)
            parts = out.split([lin.weight.size(0) for lin in lins], dim=-1)
        else:
            parts = [lin(x) for lin, x in zip(lins, (x_dst, x_src, x_src, x_dst))]
        query, key, value = (part.reshape(-1, H, C) for part in parts[:3])
        return query, key, value, parts[3] if self.root_weight else None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"

