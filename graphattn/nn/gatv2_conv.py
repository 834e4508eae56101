r"""GATv2Conv: PyG's :class:`~torch_geometric.nn.conv.GATv2Conv` on the engine."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from ._gat_common import GATBase, returned_attention

__all__ = ["GATv2Conv"]


class GATv2Conv(GATBase):
    r"""The GATv2 operator of `"How Attentive are Graph Attention Networks?"
    <https://arxiv.org/abs/2105.14491>`_, a drop-in replacement for PyG's ``GATv2Conv`` (same arguments,
    defaults, parameter names, initialisation and outputs; a PyG ``GATv2Conv`` ``state_dict`` loads
    strictly):

    .. math::
        \mathbf{x}'_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}} \alpha_{i,j} \mathbf{\Theta}_s \mathbf{x}_j,

        \alpha_{i,j} = \operatorname{softmax}_j\left(\mathbf{a}^{\top} \operatorname{LeakyReLU}\left(
        \mathbf{\Theta}_s \mathbf{x}_j + \mathbf{\Theta}_t \mathbf{x}_i + \mathbf{\Theta}_e \mathbf{e}_{i,j}
        \right)\right)

    per head (``lin_l`` is :math:`\mathbf{\Theta}_s`, ``lin_r`` :math:`\mathbf{\Theta}_t`, the same with
    ``share_weights``; the edge term only with ``edge_dim``), heads concatenated or averaged, plus the
    optional residual and the bias. Self-loops as in :class:`~graphattn.nn.GATConv`.

    On the engine the layer is one ``graph_attention(x_r, x_l, x_l, ..., score="gatv2", att=a)`` call: the
    kernels form :math:`\mathbf{a}^{\top} \operatorname{LeakyReLU}(\cdot)` per edge on the fly, so without
    edge features no :math:`E \times H \times C` tensor exists in the forward or the backward pass (PyG
    forms the sums :math:`\mathbf{\Theta}_s \mathbf{x}_j + \mathbf{\Theta}_t \mathbf{x}_i`, their
    activation, the messages and their gradients). With edge features, the projected
    :math:`\mathbf{\Theta}_e \mathbf{e}_{ij}` ``[E, H, C]`` is passed as ``edge_k``: the one
    :math:`E \times H \times C` tensor (and its gradient), which PyG forms too.

    Differences from PyG: ``return_attention_weights`` gives the weights before attention dropout
    (PyG: after); ``edge_attr`` without ``edge_dim`` and ``x=(x_src, None)`` are errors (PyG fails on an
    assertion).

    Args:
        in_channels: size of each input sample, ``-1`` for lazy initialisation, or a
            ``(source, destination)`` tuple for bipartite graphs.
        out_channels: size of each output sample per head.
        heads: number of attention heads.
        concat: concatenate the heads (else average them).
        negative_slope: LeakyReLU slope.
        dropout: dropout probability of the attention coefficients (training only).
        add_self_loops: remove existing self-loops and add one per node.
        edge_dim: edge feature size (``None``: no edge features).
        fill_value: edge features of the added self-loops (see :class:`~graphattn.nn.GATConv`).
        bias: learn additive biases (of the projections and of the output).
        share_weights: one projection for sources and destinations.
        residual: add a learnable projection of the destination features.
        **kwargs: arguments of :class:`~torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`, ``edge_index`` ``[2, E]``, a sparse
          ``[N_dst, N_src]`` adjacency or an :class:`~graphattn.AttentionGraph`, edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*.
        - **output:** as :class:`~graphattn.nn.GATConv`.
    """

    def __init__(self, in_channels: Union[int, Tuple[int, int]], out_channels: int, heads: int = 1,
                 concat: bool = True, negative_slope: float = 0.2, dropout: float = 0.0, add_self_loops: bool = True,
                 edge_dim: Optional[int] = None, fill_value: Union[float, Tensor, str] = "mean", bias: bool = True,
                 share_weights: bool = False, residual: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._init_options(in_channels, out_channels, heads, concat, negative_slope, dropout, add_self_loops,
                           edge_dim, fill_value, residual)
        self.share_weights = share_weights
        width = heads * out_channels
        src_channels, dst_channels = (in_channels, in_channels) if isinstance(in_channels, int) else in_channels
        self.lin_l = Linear(src_channels, width, bias=bias, weight_initializer="glorot")
        if share_weights:
            self.lin_r = self.lin_l
        else:
            self.lin_r = Linear(dst_channels, width, bias=bias, weight_initializer="glorot")
        self.att = Parameter(torch.empty(1, heads, out_channels))
        self.lin_edge = None if edge_dim is None else Linear(edge_dim, width, bias=False, weight_initializer="glorot")
        self._init_output(bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_l.reset_parameters()
        self.lin_r.reset_parameters()
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
        if self.res is not None:
            self.res.reset_parameters()
        glorot(self.att)
        zeros(self.bias)

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]], edge_index: Any, edge_attr: Optional[Tensor] = None,
                return_attention_weights: Optional[bool] = None) -> Union[Tensor, Tuple[Tensor, Any]]:
        H, C = self.heads, self.out_channels
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if x_dst is None:
            raise ValueError("GATv2Conv needs destination features: x=(x_src, x_dst) with x_dst not None")
        if x_src.dim() != 2:
            raise ValueError(f"x must be node features [N, F], got {list(x_src.shape)}")
        res = self.res(x_dst) if self.res is not None else None
        x_l = self.lin_l(x_src).view(-1, H, C)
        x_r = x_l if x_dst is x_src and self.share_weights else self.lin_r(x_dst).view(-1, H, C)
        graph, edge_attr = self._attention_graph(edge_index, edge_attr, *self._node_counts(edge_index, x_l.size(0),
                                                                                            x_r.size(0)))
        edge_k = None if edge_attr is None else self.lin_edge(edge_attr).view(-1, H, C)     # [E', H, C]
        need_weights = bool(return_attention_weights)
        out, alpha = self._attend(x_r, x_l, x_l, graph, need_weights, score="gatv2", att=self.att.view(H, C),
                                  edge_k=edge_k)
        out = self._finish(out, res)
        if need_weights:
            return out, returned_attention(edge_index, graph, alpha)
        return out
