r"""GPSLayer: PyG's :class:`~torch_geometric.nn.conv.GPSConv` with the global attention on the engine."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Dropout, Linear, Sequential
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver

from ..graph import AttentionGraph
from .linear_attention import LinearGraphAttention
from .multihead_attention import MultiheadGraphAttention

__all__ = ["GPSLayer"]

ATTN_TYPES = ("multihead", "performer", "linear")


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
            as ``conv(x, edge_index, **kwargs)``.
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
        share across layers), ``num_graphs`` (optional, avoids a device sync), ``**kwargs``
        for ``conv`` (e.g. ``edge_attr``). Returns ``[N, C]``.

        Sparsification hooks (``multihead`` only, all ``None`` by default; see
        :mod:`graphattn.sparsify`): ``attn_nodes`` ``[N']`` runs the global attention on these
        tokens only (``attn_graph`` is then over the ``N'`` tokens; the others get a zero attention
        output); ``attn_edge_mask`` ``[E]`` and ``attn_head_mask`` ``[H]`` are passed to
        :class:`MultiheadGraphAttention`; ``attn_scale`` (scalar or ``[N]``) multiplies the
        attention output (drop-path, token masks). ``self.attn = None`` removes the global
        attention block: :math:`\mathbf{h}^{T} = \operatorname{Norm}_2(\mathbf{x})`.
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
                attn_nodes: Optional[Tensor] = None, attn_edge_mask: Optional[Tensor] = None,
                attn_head_mask: Optional[Tensor] = None, attn_scale: Union[Tensor, float, None] = None,
                **kwargs: Any) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {list(x.shape)}")
        norm_batch = batch              # the norms see what the caller gave, as in GPSConv (None: one graph)
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
            num_graphs = 1
        hs = []
        if self.conv is not None:
            h = self.conv(x, edge_index, **kwargs)
            h = F.dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm1, h + x, norm_batch))
        sparsified = any(a is not None for a in (attn_nodes, attn_edge_mask, attn_head_mask, attn_scale))
        if sparsified and self.attn_type != "multihead":
            raise ValueError("attn_nodes/attn_edge_mask/attn_head_mask/attn_scale need attn_type='multihead'")
        if self.attn is None:
            hs.append(self._norm(self.norm2, x, norm_batch))
        else:
            if self.attn_type == "multihead":
                h = self._global_attention(x, batch, num_graphs, attn_graph, attn_nodes, attn_edge_mask,
                                           attn_head_mask)
                if isinstance(attn_scale, Tensor) and attn_scale.dim() == 1:
                    attn_scale = attn_scale.unsqueeze(-1)                   # per token
                h = h if attn_scale is None else h * attn_scale
            else:
                h = self.attn(x, batch, num_graphs)
            h = F.dropout(h, p=self.dropout, training=self.training)
            hs.append(self._norm(self.norm2, h + x, norm_batch))
        out = sum(hs)
        out = out + self.mlp(out)
        return self._norm(self.norm3, out, norm_batch)

    def _global_attention(self, x: Tensor, batch: Tensor, num_graphs: Optional[int],
                          attn_graph: Optional[AttentionGraph], attn_nodes: Optional[Tensor],
                          edge_mask: Optional[Tensor], head_mask: Optional[Tensor]) -> Tensor:
        if attn_nodes is None:
            if attn_graph is None:
                attn_graph = AttentionGraph.full_per_graph(batch, num_graphs)
            return self.attn(x, attn_graph, edge_mask, head_mask)
        if attn_graph is None:
            attn_graph = AttentionGraph.full_per_graph(batch[attn_nodes], num_graphs)
        out = self.attn(x[attn_nodes], attn_graph, edge_mask, head_mask)
        return x.new_zeros(x.shape).index_copy(0, attn_nodes, out)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, conv={self.conv}, heads={self.heads}, "
                f"attn_type={self.attn_type})")
