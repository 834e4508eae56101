r"""GraphTransformerLayer: the sparse graph transformer layer of Dwivedi & Bresson."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from ..functional import aggregate, as_attention_graph, dropout, edge_scores, graph_attention, normalize
from ..graph import AttentionGraph
from ._message_passing import EngineMessagePassing
from .dropout import Dropout

__all__ = ["GraphTransformerLayer"]

NORMS = ("batch_norm", "layer_norm")


def _norm(kind: Optional[str], channels: int) -> Optional[torch.nn.Module]:
    if kind is None:
        return None
    return torch.nn.BatchNorm1d(channels) if kind == "batch_norm" else torch.nn.LayerNorm(channels)


def _ffn(channels: int, dropout: float) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(channels, 2 * channels), torch.nn.ReLU(),
                               Dropout(dropout), torch.nn.Linear(2 * channels, channels))


class GraphTransformerLayer(EngineMessagePassing):
    r"""The graph transformer layer of `"A Generalization of Transformer Networks to Graphs"
    <https://arxiv.org/abs/2012.09699>`_ (Dwivedi & Bresson), attention restricted to edges.

    Per head :math:`h` and edge :math:`j \to i` (``Q``, ``K``, ``V``, ``E`` without bias,
    :math:`d = C / H`):

    .. math::
        \hat{\mathbf{w}}_{ij} = \frac{\mathbf{Q}\mathbf{h}_i \odot \mathbf{K}\mathbf{h}_j}{\sqrt{d}}
        \;[\odot\, \mathbf{E}\mathbf{e}_{ij}]\in\mathbb{R}^{d},\qquad
        s_{ij} = \textstyle\sum_d \hat{\mathbf{w}}_{ij},\qquad
        \hat{\mathbf{h}}_i = \sum_j a_{ij} \mathbf{V}\mathbf{h}_j

    with :math:`a_{ij} = \operatorname{softmax}_j(s_{ij})`, or with ``clamp=5.0`` the paper's
    :math:`a_{ij} = \exp(\operatorname{clamp}(s_{ij}, -5, 5)) / (\sum_j \exp(\ldots) + 10^{-6})`.
    Then (post-norm) :math:`\mathbf{h}' = \operatorname{Norm}(\mathbf{h}'' + \operatorname{FFN}(\mathbf{h}''))`,
    :math:`\mathbf{h}'' = \operatorname{Norm}(\mathbf{h} + \mathbf{O}_h \operatorname{Dropout}(\hat{\mathbf{h}}))`
    (FFN: :math:`C \to 2C \to C`, ReLU, dropout before the second linear). With edge features the per-dimension score
    vector :math:`\hat{\mathbf{w}}_{ij}` is the new edge representation, updated by the parallel
    stream :math:`\mathbf{e}' = \operatorname{Norm}(\mathbf{e}'' + \operatorname{FFN}_e(\mathbf{e}''))`,
    :math:`\mathbf{e}'' = \operatorname{Norm}(\mathbf{e} + \mathbf{O}_e \operatorname{Dropout}(\hat{\mathbf{w}}))`.

    Without edge features the attention is one engine call (:func:`~graphattn.graph_attention`,
    fused; memory :math:`O(E \cdot H + N \cdot C)`). With edge features the score vectors are
    ``[E, H, d] = [E, C]`` — the size of the edge representations themselves, which this layer
    returns; the aggregation is the engine's SpMM.

    Args:
        in_channels: node channels :math:`C` (input = output).
        heads: attention heads (must divide ``in_channels``).
        edge_dim: edge channels, equal to ``in_channels`` when used (``None``: no edge stream).
        dropout: dropout after attention and inside the FFNs.
        norm: ``"batch_norm"``, ``"layer_norm"`` or ``None``.
        residual: add the residual connections.
        clamp: ``None`` (softmax) or the paper's clamp bound (``5.0``) for
          :math:`\exp(\operatorname{clamp}(s, -c, c))` weights.
        update_edges: build and run the edge stream (with ``edge_dim``); ``False`` for the last
          layer of a model, whose edge output nobody reads (edges still modulate the scores).

    Forward:
        ``x`` ``[N, C]``, ``edge_index`` ``[2, E]`` / sparse adjacency / ``AttentionGraph``,
        ``edge_attr`` ``[E, C]`` (when ``edge_dim``). Returns ``x'`` ``[N, C]``, and with edge
        features and ``update_edges`` ``(x', edge_attr')``.
    """

    def __init__(self, in_channels: int, heads: int = 8, edge_dim: Optional[int] = None, dropout: float = 0.0,
                 norm: Optional[str] = "batch_norm", residual: bool = True, clamp: Optional[float] = None,
                 update_edges: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if in_channels % heads != 0:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by heads ({heads})")
        if edge_dim is not None and edge_dim != in_channels:
            raise ValueError(f"edge_dim must equal in_channels ({in_channels}), got {edge_dim}")
        if norm is not None and norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS} or None, got {norm!r}")
        if clamp is not None and clamp <= 0:
            raise ValueError(f"clamp must be positive, got {clamp}")
        self.in_channels, self.heads, self.edge_dim = in_channels, heads, edge_dim
        self.dropout, self.residual, self.clamp, self.norm = dropout, residual, clamp, norm
        C = in_channels
        self.Q = torch.nn.Linear(C, C, bias=False)
        self.K = torch.nn.Linear(C, C, bias=False)
        self.V = torch.nn.Linear(C, C, bias=False)
        self.O_h = torch.nn.Linear(C, C)
        self.norm1_h, self.norm2_h = _norm(norm, C), _norm(norm, C)
        self.ffn_h = _ffn(C, dropout)
        self.use_edges = edge_dim is not None
        self.update_edges = self.use_edges and update_edges
        if self.use_edges:
            self.E = torch.nn.Linear(C, C, bias=False)
        if self.update_edges:
            self.O_e = torch.nn.Linear(C, C)
            self.norm1_e, self.norm2_e = _norm(norm, C), _norm(norm, C)
            self.ffn_e = _ffn(C, dropout)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _attend(self, x: Tensor, graph: AttentionGraph, edge_attr: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        n, H = x.size(0), self.heads
        q, k, v = (lin(x).view(n, H, -1) for lin in (self.Q, self.K, self.V))
        scale = q.size(-1) ** -0.5
        if edge_attr is None and self.clamp is None and not self.instrumented:
            return graph_attention(q, k, v, graph, scale=scale), None
        w_hat = None
        if edge_attr is None:
            scores = edge_scores(q, k, graph, scale=scale)
        else:
            src, dst = graph.edge_index
            w_hat = q[dst] * k[src] * scale * self.E(edge_attr).view(-1, H, q.size(-1))   # [E, H, d]
            scores = w_hat.sum(-1)
        weights = normalize(scores, graph, clamp=self.clamp)
        out = self.propagate_messages(weights, v, graph) if self.instrumented else aggregate(weights, v, graph)
        return out, None if w_hat is None else w_hat.reshape(-1, self.in_channels)

    def _post(self, h_in: Tensor, h: Tensor, out: torch.nn.Module, norm1, ffn, norm2) -> Tensor:
        h = out(dropout(h, p=self.dropout, training=self.training))
        h = h_in + h if self.residual else h
        h = norm1(h) if norm1 is not None else h
        h = h + ffn(h) if self.residual else ffn(h)
        return norm2(h) if norm2 is not None else h

    def forward(self, x: Tensor, edge_index: Any, edge_attr: Optional[Tensor] = None
                ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"x must have shape [N, {self.in_channels}], got {list(x.shape)}")
        if self.use_edges and (edge_attr is None or edge_attr.dim() != 2 or edge_attr.size(-1) != self.in_channels):
            raise ValueError(f"edge_attr of shape [E, {self.in_channels}] is required (edge_dim was set)")
        if not self.use_edges and edge_attr is not None:
            raise ValueError("edge_attr was given but the layer has no edge_dim")
        graph = as_attention_graph(edge_index, x.size(0), x.size(0))
        if edge_attr is not None and edge_attr.size(0) != graph.num_edges:
            raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but the graph has {graph.num_edges} edges")
        h, e = self._attend(x, graph, edge_attr)
        h = self._post(x, h.reshape(x.size(0), -1), self.O_h, self.norm1_h, self.ffn_h, self.norm2_h)
        if not self.update_edges:
            return h
        e = self._post(edge_attr, e, self.O_e, self.norm1_e, self.ffn_e, self.norm2_e)
        return h, e

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, heads={self.heads}, edge_dim={self.edge_dim}, "
                f"norm={self.norm}, clamp={self.clamp})")
