r"""GPSLayer: PyG's :class:`~torch_geometric.nn.conv.GPSConv` with the global attention on the engine."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Linear, Sequential
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver

from ..functional import dropout
from ..graph import AttentionGraph
from .dropout import Dropout
from .linear_attention import LinearGraphAttention
from .multihead_attention import MultiheadGraphAttention

__all__ = ["GPSLayer", "AttentionMasks"]

ATTN_TYPES = ("multihead", "performer", "linear")


@dataclass(frozen=True)
class AttentionMasks:
    r"""What restricts and weights the global attention of one :class:`GPSLayer`
    (``attn_type="multihead"``), all optional: with the attention graph :math:`\mathcal A`,

    .. math::
        \mathbf{h}^{T}_i = s_i \operatorname{Attn}_{\mathcal A}(\mathbf{x}_{\mathcal T};\,
        m^{edge}, \mathbf{m}^{head})_i \ \text{for}\ i \in \mathcal T,\qquad
        \mathbf{h}^{T}_i = \mathbf{0}\ \text{otherwise},

    before the dropout, residual and norm of the block.

    Attributes:
        nodes: ``[N']`` the tokens :math:`\mathcal T` that attend (``None``: all); the attention
            graph is then over these :math:`N'` tokens.
        edge_mask: ``[E]`` weights :math:`m^{edge}` of the attention-graph edges (they re-weight
            the softmax, see :class:`MultiheadGraphAttention`).
        head_mask: ``[H]`` weights :math:`\mathbf{m}^{head}` of the heads' outputs.
        scale: :math:`s`, a scalar or ``[N]`` multiplying the attention output (gates, drop-path).

    GTSP (:mod:`graphattn.sparsify`) builds one per layer: token and edge masks, head masks and
    layer gates in training, the kept tokens of the exported model.
    """

    nodes: Optional[Tensor] = None
    edge_mask: Optional[Tensor] = None
    head_mask: Optional[Tensor] = None
    scale: Union[Tensor, float, None] = None


_NO_MASKS = AttentionMasks()


class GPSLayer(torch.nn.Module):
    r"""The general, powerful, scalable graph transformer layer of
    `"Recipe for a General, Powerful, Scalable Graph Transformer" <https://arxiv.org/abs/2205.12454>`_:

    .. math::
        \mathbf{h}^{M} = \operatorname{Norm}_1(\mathbf{x}
        + \operatorname{Dropout}(\operatorname{MPNN}(\mathbf{x}, \mathbf{A}))),\quad
        \mathbf{h}^{T} = \operatorname{Norm}_2(\mathbf{x}
        + \operatorname{Dropout}(\operatorname{GlobalAttn}(\mathbf{x}))),

    .. math::
        \mathbf{x}' = \operatorname{Norm}_3(\mathbf{h} + \operatorname{MLP}(\mathbf{h})),\qquad
        \mathbf{h} = \mathbf{h}^{M} + \mathbf{h}^{T}.

    Same arguments, submodule names and outputs as PyG's ``GPSConv`` (a ``GPSConv`` ``state_dict``
    loads for ``attn_type="multihead"``), but the global attention is full attention *within each
    graph of the batch* run on the engine as a block-diagonal attention graph
    (:meth:`~graphattn.AttentionGraph.full_per_graph`): no ``to_dense_batch``, no padding to the
    largest graph, :math:`O(\sum_g n_g^2 \cdot H)` memory instead of :math:`O(G\, n_{max}^2 H)`.

    Args:
        channels: node channels :math:`C`.
        conv: the local message-passing layer (``None``: global attention only). It is called
            as ``conv(x, edge_index, **kwargs)`` and returns the new node features, or
            ``(x', e')`` with ``e'`` new edge features (``None``: not updated, as
            :class:`~graphattn.models.LocalConv`), see :meth:`forward_with_edges`.
        heads: attention heads.
        dropout: dropout after the local and global blocks and in the MLP.
        act, act_kwargs: MLP activation (a PyG activation resolver name).
        norm, norm_kwargs: normalisation (a PyG normalisation resolver name, ``None``: none).
        attn_type: ``"multihead"`` (softmax attention, parameters of
            :class:`torch.nn.MultiheadAttention`; ``attn_kwargs`` ``dropout``, ``bias``),
            ``"performer"`` (FAVOR+ random features) or ``"linear"`` (:math:`\operatorname{elu}+1`
            features), both :class:`LinearGraphAttention` per graph (``attn_kwargs``:
            ``head_channels`` (performer: 64 as in PyG, linear: ``channels // heads``), ``qkv_bias``,
            ``attn_out_bias``, ``dropout``).

    Forward:
        ``x`` ``[N, C]``, ``edge_index`` (for ``conv``), ``batch`` ``[N]`` (``None``: one graph),
        ``attn_graph`` (optional, the precomputed ``AttentionGraph.full_per_graph(batch)`` to
        share across layers; over the ``attn_masks.nodes`` with those), ``num_graphs``
        (optional, avoids a device sync), ``attn_masks`` (optional :class:`AttentionMasks`,
        ``multihead`` only), ``**kwargs`` for ``conv`` (e.g. ``edge_attr``). Returns ``[N, C]``, as
        ``GPSConv``; :meth:`forward_with_edges` also returns the edge features.
        ``self.attn = None`` removes the global attention block:
        :math:`\mathbf{h}^{T} = \operatorname{Norm}_2(\mathbf{x})`.
    """

    def __init__(self, channels: int, conv: Optional[torch.nn.Module], heads: int = 1, dropout: float = 0.0,
                 act: str = "relu", act_kwargs: Optional[Dict[str, Any]] = None,
                 norm: Optional[str] = "batch_norm", norm_kwargs: Optional[Dict[str, Any]] = None,
                 attn_type: str = "multihead", attn_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__()
        if attn_type not in ATTN_TYPES:
            raise ValueError(f"attn_type must be one of {ATTN_TYPES}, got {attn_type!r}")
        self.channels, self.conv, self.heads, self.dropout, self.attn_type = channels, conv, heads, dropout, attn_type
        attn_kwargs = dict(attn_kwargs or {})
        if attn_type == "multihead":
            unsupported = set(attn_kwargs) - {"dropout", "bias"}
            if unsupported:
                raise ValueError(f"attn_kwargs {sorted(unsupported)} are not supported for 'multihead' "
                                 f"(supported: dropout, bias)")
            self.attn = MultiheadGraphAttention(channels, heads, **attn_kwargs)
        else:
            kernel = "performer" if attn_type == "performer" else "elu"
            if attn_type == "performer":
                attn_kwargs.setdefault("head_channels", 64)        # PyG's PerformerAttention default
            self.attn = LinearGraphAttention(channels, heads, kernel=kernel, **attn_kwargs)
        self.mlp = Sequential(Linear(channels, channels * 2), activation_resolver(act, **(act_kwargs or {})),
                              Dropout(dropout), Linear(channels * 2, channels), Dropout(dropout))
        norm_kwargs = norm_kwargs or {}
        self.norm1 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm2 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm3 = normalization_resolver(norm, channels, **norm_kwargs)
        self.norm_with_batch = self.norm1 is not None and "batch" in inspect.signature(self.norm1.forward).parameters

    def reset_parameters(self) -> None:
        if self.conv is not None:
            self.conv.reset_parameters()
        if self.attn is not None:
            self.attn.reset_parameters()
        for layer in self.mlp:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        for norm in (self.norm1, self.norm2, self.norm3):
            if norm is not None:
                norm.reset_parameters()

    def _norm(self, norm: Optional[torch.nn.Module], h: Tensor, batch: Optional[Tensor]) -> Tensor:
        if norm is None:
            return h
        return norm(h, batch=batch) if self.norm_with_batch else norm(h)

    def forward(self, x: Tensor, edge_index: Any, batch: Optional[Tensor] = None,
                attn_graph: Optional[AttentionGraph] = None, num_graphs: Optional[int] = None, *,
                attn_masks: Optional[AttentionMasks] = None, **kwargs: Any) -> Tensor:
        return self.forward_with_edges(x, edge_index, batch, attn_graph, num_graphs, attn_masks=attn_masks,
                                       **kwargs)[0]

    def forward_with_edges(self, x: Tensor, edge_index: Any, batch: Optional[Tensor] = None,
                           attn_graph: Optional[AttentionGraph] = None, num_graphs: Optional[int] = None, *,
                           attn_masks: Optional[AttentionMasks] = None,
                           **kwargs: Any) -> Tuple[Tensor, Optional[Tensor]]:
        r"""``forward`` that also returns the edge features for the next layer, ``(x', e')``.
        When ``conv`` returns new edge features :math:`\hat{\mathbf{e}}` (GatedGCN),
        :math:`\mathbf{e}' = \mathbf{e} + \operatorname{Dropout}(\hat{\mathbf{e}})` (GraphGPS's
        residual, ``e`` = ``kwargs["edge_attr"]``); otherwise ``e'`` is ``kwargs.get("edge_attr")``."""
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {list(x.shape)}")
        if attn_masks is not None and not isinstance(attn_masks, AttentionMasks):
            raise TypeError(f"attn_masks must be an AttentionMasks, got {type(attn_masks).__name__}")
        if attn_masks is not None and self.attn_type != "multihead":
            raise ValueError("attn_masks need attn_type='multihead'")
        norm_batch = batch              # the norms see what the caller gave, as in GPSConv (None: one graph)
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
            num_graphs = 1
        edge_attr, edge_update = kwargs.get("edge_attr"), None
        hs = []
        if self.conv is not None:
            h = self.conv(x, edge_index, **kwargs)
            if isinstance(h, tuple):
                h, edge_update = h
            h = dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm1, h + x, norm_batch))
        if self.attn is None:
            hs.append(self._norm(self.norm2, x, norm_batch))
        else:
            if self.attn_type == "multihead":
                h = self._global_attention(x, batch, num_graphs, attn_graph, attn_masks or _NO_MASKS)
            else:
                h = self.attn(x, batch, num_graphs)
            h = dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm2, h + x, norm_batch))
        out = sum(hs)
        out = out + self.mlp(out)
        out = self._norm(self.norm3, out, norm_batch)
        if edge_update is not None:
            edge_attr = edge_attr + dropout(edge_update, self.dropout, self.training)
        return out, edge_attr

    def _global_attention(self, x: Tensor, batch: Tensor, num_graphs: Optional[int],
                          attn_graph: Optional[AttentionGraph], masks: AttentionMasks) -> Tensor:
        nodes, scale = masks.nodes, masks.scale
        if nodes is None:
            if attn_graph is None:
                attn_graph = AttentionGraph.full_per_graph(batch, num_graphs)
            h = self.attn(x, attn_graph, masks.edge_mask, masks.head_mask)
        else:
            if attn_graph is None:
                attn_graph = AttentionGraph.full_per_graph(batch[nodes], num_graphs)
            out = self.attn(x[nodes], attn_graph, masks.edge_mask, masks.head_mask)
            h = x.new_zeros(x.shape).index_copy(0, nodes, out)
        if isinstance(scale, Tensor) and scale.dim() == 1:
            scale = scale.unsqueeze(-1)                                      # per token
        return h if scale is None else h * scale

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, conv={self.conv}, heads={self.heads}, "
                f"attn_type={self.attn_type})")
