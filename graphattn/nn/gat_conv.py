r"""GATConv: PyG's :class:`~torch_geometric.nn.conv.GATConv` on the engine."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from ..functional import dropout
from ._gat_common import GATBase, Size, returned_attention

__all__ = ["GATConv"]


class GATConv(GATBase):
    r"""The graph attentional operator of `"Graph Attention Networks" <https://arxiv.org/abs/1710.10903>`_,
    a drop-in replacement for PyG's ``GATConv`` (same arguments, defaults, parameter names, initialisation
    and outputs; a PyG ``GATConv`` ``state_dict`` loads strictly):

    .. math::
        \mathbf{x}'_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}} \alpha_{i,j} \mathbf{\Theta}_s \mathbf{x}_j,

        \alpha_{i,j} = \operatorname{softmax}_j\left(\operatorname{LeakyReLU}\left(
        \mathbf{a}_s^{\top} \mathbf{\Theta}_s \mathbf{x}_j + \mathbf{a}_t^{\top} \mathbf{\Theta}_t \mathbf{x}_i
        + \mathbf{a}_e^{\top} \mathbf{\Theta}_e \mathbf{e}_{i,j}\right)\right)

    per head (:math:`\mathbf{\Theta}_s = \mathbf{\Theta}_t` unless bipartite; the edge term only with
    ``edge_dim``), heads concatenated or averaged, plus the optional residual :math:`\mathbf{\Theta}_r
    \mathbf{x}_i` and the bias. Existing self-loops are removed and one loop per node appended
    (``add_self_loops``), their edge features given by ``fill_value``.

    On the engine the score needs no per-edge feature vector: the node terms
    :math:`\mathbf{a}_s^{\top} \mathbf{\Theta}_s \mathbf{x}_j` and :math:`\mathbf{a}_t^{\top}
    \mathbf{\Theta}_t \mathbf{x}_i` are ``[N, H, 1]`` and the edge term is
    :math:`\mathbf{e}_{ij}^{\top} (\mathbf{\Theta}_e^{\top} \mathbf{a}_e)` ``[E, H]`` (the projection is
    folded into the attention vector), so one ``graph_attention(..., score="gat")`` call computes the layer
    and no :math:`E \times H \times C` tensor exists in the forward or the backward pass (PyG forms the
    messages, :math:`\mathbf{\Theta}_e \mathbf{e}_{ij}` and their gradients). Attention dropout is the
    engine's counter-based mask (training only).

    Differences from PyG:

    * ``return_attention_weights`` gives the weights before attention dropout (PyG: after), as
      graphattn's other layers do; in evaluation mode, or with ``dropout=0``, they are the same.
    * ``edge_attr`` given to a layer without ``edge_dim`` is an error (PyG ignores it).
    * Two options, off by default, reproduce the GAT authors' TensorFlow code (PetarV-/GAT,
      ``utils/layers.py``, ``attn_head``): ``feature_dropout`` drops the projected features
      :math:`\mathbf{\Theta}_s \mathbf{x}_j` that are aggregated (their second ``in_drop``; the attention
      scores use the features before it), and ``attention_bias`` adds learnable per-head scalars
      ``att_src_bias`` and ``att_dst_bias`` (initialised to 0) to the source and destination terms of the
      score: the biases of the authors' ``conv1d(seq_fts, 1)`` projections (only their sum enters the
      score, inside the LeakyReLU; both are kept to mirror the two projections; with ``x=(x_src, None)``
      there is no destination term and no destination bias). Their parameters exist only when the option is
      on. The authors' first ``in_drop`` (on the layer's input) is ordinary dropout before the layer, as in
      PyG's GAT example.

    Args:
        in_channels: size of each input sample, ``-1`` for lazy initialisation, or a
            ``(source, destination)`` tuple for bipartite graphs.
        out_channels: size of each output sample per head.
        heads: number of attention heads.
        concat: concatenate the heads (else average them).
        negative_slope: LeakyReLU slope of the score.
        dropout: dropout probability of the attention coefficients (training only).
        add_self_loops: remove existing self-loops and add one per node.
        edge_dim: edge feature size (``None``: no edge features).
        fill_value: edge features of the added self-loops: a number or a tensor, or the reduction
            (``"add"``, ``"sum"``, ``"mean"``, ``"min"``, ``"max"``, ``"mul"``) of the features of the
            node's incoming edges.
        bias: learn an additive bias.
        residual: add a learnable projection of the destination features.
        feature_dropout: dropout probability of the aggregated projected features (training only; not in
            PyG, see above).
        attention_bias: learn per-head biases of the score's node terms (not in PyG, see above).
        **kwargs: arguments of :class:`~torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))` (``x_dst`` may be ``None``: no destination
          term), ``edge_index`` ``[2, E]``, a sparse ``[N_dst, N_src]`` adjacency or an
          :class:`~graphattn.AttentionGraph`, edge features :math:`(|\mathcal{E}|, D)` *(optional)*,
          ``size`` ``(N_src, N_dst)`` *(optional)*.
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot C)` (``concat``) or :math:`(|\mathcal{V}_t|, C)`; with
          ``return_attention_weights`` also ``(edge_index', alpha [E', H])`` over the attention graph (the
          input's edges minus its self-loops, then the added loops), for a ``torch.sparse`` adjacency
          ``(adj', alpha)`` with ``alpha`` as the values of ``adj'`` (row-major), for a ``SparseTensor`` the
          ``SparseTensor`` with ``alpha`` as values.
    """

    def __init__(self, in_channels: Union[int, Tuple[int, int]], out_channels: int, heads: int = 1,
                 concat: bool = True, negative_slope: float = 0.2, dropout: float = 0.0, add_self_loops: bool = True,
                 edge_dim: Optional[int] = None, fill_value: Union[float, Tensor, str] = "mean", bias: bool = True,
                 residual: bool = False, feature_dropout: float = 0.0, attention_bias: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._init_options(in_channels, out_channels, heads, concat, negative_slope, dropout, add_self_loops,
                           edge_dim, fill_value, residual)
        if not 0.0 <= feature_dropout < 1.0:
            raise ValueError(f"feature_dropout must be in [0, 1), got {feature_dropout}")
        self.feature_dropout = feature_dropout
        self.attention_bias = attention_bias
        width = heads * out_channels
        self.lin = self.lin_src = self.lin_dst = None
        if isinstance(in_channels, int):
            self.lin = Linear(in_channels, width, bias=False, weight_initializer="glorot")
        else:
            self.lin_src = Linear(in_channels[0], width, False, weight_initializer="glorot")
            self.lin_dst = Linear(in_channels[1], width, False, weight_initializer="glorot")
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = Parameter(torch.empty(1, heads, out_channels))
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, width, bias=False, weight_initializer="glorot")
            self.att_edge = Parameter(torch.empty(1, heads, out_channels))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        self._init_output(bias)
        if attention_bias:
            self.att_src_bias = Parameter(torch.empty(1, heads, 1))
            self.att_dst_bias = Parameter(torch.empty(1, heads, 1))
        else:
            self.register_parameter("att_src_bias", None)
            self.register_parameter("att_dst_bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin, self.lin_src, self.lin_dst, self.lin_edge):
            if lin is not None:
                lin.reset_parameters()
        if self.res is not None:          # PyG's order: the projections, res, then the attention vectors
            self.res.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        glorot(self.att_edge)
        zeros(self.bias)
        zeros(self.att_src_bias)
        zeros(self.att_dst_bias)

    def forward(self, x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]], edge_index: Any,
                edge_attr: Optional[Tensor] = None, size: Size = None,
                return_attention_weights: Optional[bool] = None) -> Union[Tensor, Tuple[Tensor, Any]]:
        H, C = self.heads, self.out_channels
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if x_src.dim() != 2:
            raise ValueError(f"x must be node features [N, F] (static graphs are not supported), got "
                             f"{list(x_src.shape)}")
        res = self.res(x_dst) if self.res is not None and x_dst is not None else None
        lin_src = self.lin if self.lin is not None else self.lin_src
        lin_dst = self.lin if self.lin is not None else self.lin_dst
        h_src = lin_src(x_src).view(-1, H, C)
        if x_dst is x_src and self.lin is not None:
            h_dst: Optional[Tensor] = h_src
        else:
            h_dst = None if x_dst is None else lin_dst(x_dst).view(-1, H, C)
        num_src, num_dst = self._node_counts(edge_index, h_src.size(0), None if h_dst is None else h_dst.size(0), size)
        graph, edge_attr = self._attention_graph(edge_index, edge_attr, num_src, num_dst)

        score_src = (h_src * self.att_src).sum(dim=-1, keepdim=True)                    # [N_src, H, 1]
        if h_dst is None:                       # (x_src, None): no destination term, as in PyG
            score_dst = h_src.new_zeros(num_dst, H, 1)
        else:
            score_dst = (h_dst * self.att_dst).sum(dim=-1, keepdim=True)                # [N_dst, H, 1]
            if self.att_dst_bias is not None:
                score_dst = score_dst + self.att_dst_bias
        if self.att_src_bias is not None:
            score_src = score_src + self.att_src_bias
        edge_term = None
        if edge_attr is not None:
            att_edge = (self.lin_edge.weight.view(H, C, -1) * self.att_edge.view(H, C, 1)).sum(dim=1)   # [H, D]
            edge_term = edge_attr @ att_edge.t()                                        # [E', H]
        value = dropout(h_src, self.feature_dropout, self.training) if self.feature_dropout else h_src
        need_weights = bool(return_attention_weights)
        out, alpha = self._attend(score_dst, score_src, value, graph, need_weights, score="gat", bias=edge_term)
        out = self._finish(out, res)
        if need_weights:
            return out, returned_attention(edge_index, graph, alpha)
        return out
