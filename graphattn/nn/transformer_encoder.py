r"""GraphTransformerEncoderLayer / GraphTransformerEncoder: :class:`torch.nn.TransformerEncoderLayer` and
:class:`torch.nn.TransformerEncoder` (post-norm) with the self-attention on an attention graph."""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import Tensor
from torch_geometric.nn.resolver import activation_resolver

from .dropout import Dropout
from .multihead_attention import MultiheadGraphAttention

__all__ = ["GraphTransformerEncoderLayer", "GraphTransformerEncoder"]


class GraphTransformerEncoderLayer(torch.nn.Module):
    r"""The post-norm transformer encoder layer of :class:`torch.nn.TransformerEncoderLayer`
    (``norm_first=False``) with every node attending to its in-edges of an attention graph:

    .. math::
        \mathbf{h} = \operatorname{LN}_1\big(\mathbf{x} + \operatorname{Dropout}(\operatorname{Attn}_{\mathcal A}
        (\mathbf{x}))\big),\qquad
        \mathbf{x}' = \operatorname{LN}_2\big(\mathbf{h} + \operatorname{Dropout}(\mathbf{W}_2\,
        \operatorname{Dropout}(\sigma(\mathbf{W}_1 \mathbf{h} + \mathbf{b}_1)) + \mathbf{b}_2)\big)

    with :math:`\operatorname{Attn}_{\mathcal A}` a :class:`~graphattn.nn.MultiheadGraphAttention` (attention
    dropout ``dropout``). Over :meth:`~graphattn.AttentionGraph.full_per_graph` this is
    ``TransformerEncoderLayer`` applied to every graph of a batch separately, without padding. Parameter names
    (``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``) and initialisation are
    ``TransformerEncoderLayer``'s, so its ``state_dict`` loads.

    Args:
        d_model: width :math:`C`; nhead: heads; dim_feedforward: hidden width of the feed-forward block;
        dropout: dropout of the attention weights, the feed-forward hidden layer and both residual branches;
        activation: :math:`\sigma` (a PyG activation resolver name; ``TransformerEncoderLayer``'s default ReLU).

    ``queries`` ``[M]`` computes the rows ``queries`` of the output only, ``graph`` then going from the
    :math:`N` rows to these :math:`M` (see :class:`~graphattn.nn.MultiheadGraphAttention`). ``head_mask`` ``[H]``
    scales each head's output before the output projection (GTSP's head masks; ``None``: all heads).

    Shapes:
        - **input:** ``x`` ``[N, C]``, ``graph`` (anything :func:`~graphattn.graph_attention` takes),
          ``queries`` ``[M]``, ``head_mask`` ``[H]``.
        - **output:** ``[N, C]`` (``[M, C]`` with ``queries``).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiheadGraphAttention(d_model, nhead, dropout=dropout)
        self.linear1 = torch.nn.Linear(d_model, dim_feedforward)
        self.dropout = Dropout(dropout)
        self.linear2 = torch.nn.Linear(dim_feedforward, d_model)
        self.norm1 = torch.nn.LayerNorm(d_model)
        self.norm2 = torch.nn.LayerNorm(d_model)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation_resolver(activation)

    def forward(self, x: Tensor, graph: Any, queries: Optional[Tensor] = None,
                head_mask: Optional[Tensor] = None) -> Tensor:
        attended = self.self_attn(x, graph, head_mask=head_mask, queries=queries)
        x = self.norm1((x if queries is None else x.index_select(0, queries)) + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x))))))


class GraphTransformerEncoder(torch.nn.Module):
    r""":class:`torch.nn.TransformerEncoder` of post-norm :class:`GraphTransformerEncoderLayer` layers, then a
    final LayerNorm (``norm=True``), over one attention graph shared by all layers. As
    ``TransformerEncoder`` (which deep-copies the layer it is given), every layer starts as a copy of one
    initialised layer; the parameter names (``layers.<i>....``, ``norm``) are ``TransformerEncoder``'s, so its
    ``state_dict`` loads.

    Args:
        d_model, nhead, dim_feedforward, dropout, activation: of every layer
            (:class:`GraphTransformerEncoderLayer`).
        num_layers: number of layers.
        norm: end with ``LayerNorm(d_model)``.

    ``outputs=(rows, rows_graph)`` computes only the rows ``rows`` ``[M]`` of the output: the last layer runs
    for these rows, attending through ``rows_graph`` (the in-edges of these rows in ``graph``, as a graph from
    the :math:`N` rows to the :math:`M`), the earlier layers for all rows, as they must. ``head_masks``
    ``[L, H]``: the head mask of every layer (see :class:`GraphTransformerEncoderLayer`; ``None``: all heads).

    Shapes:
        - **input:** ``x`` ``[N, C]``, ``graph`` (anything :func:`~graphattn.graph_attention` takes),
          ``outputs`` (``[M]``, a graph from :math:`N` to :math:`M` rows), ``head_masks`` ``[L, H]``.
        - **output:** ``[N, C]`` (``[M, C]`` with ``outputs``).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, num_layers: int,
                 activation: str = "relu", norm: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layer = GraphTransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation)
        self.layers = torch.nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = torch.nn.LayerNorm(d_model) if norm else None

    def forward(self, x: Tensor, graph: Any, outputs: Optional[tuple[Tensor, Any]] = None,
                head_masks: Optional[Tensor] = None) -> Tensor:
        if head_masks is not None and head_masks.size(0) != len(self.layers):
            raise ValueError(f"head_masks must have one row per layer ({len(self.layers)}), got "
                             f"{list(head_masks.shape)}")
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            mask = None if head_masks is None else head_masks[i]
            if i < last or outputs is None:
                x = layer(x, graph, head_mask=mask)
            else:
                x = layer(x, outputs[1], outputs[0], head_mask=mask)
        return x if self.norm is None else self.norm(x)
