r"""GINAttention: graph-aware isomorphic attention with GIN aggregation (Buehler 2025)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..functional import attention_weights, graph_attention
from ._isomorphic import AttentionAdjacency, HeadwiseMLP
from ._message_passing import EngineMessagePassing

__all__ = ["GINAttention"]


class GINAttention(EngineMessagePassing):
    r"""GIN-Attention of `"Graph-Aware Isomorphic Attention for Adaptive Dynamics in Transformers"
    <https://arxiv.org/abs/2501.02393>`_: the attention matrix is used as a weighted adjacency
    and aggregated the way GIN does, per head :math:`h`:

    .. math::
        a_{ij,h} = \operatorname{softmax}_{j \in \mathcal N(i)}\!\Big(\frac{\alpha_h \langle
        \mathbf{q}_{i,h}, \mathbf{k}_{j,h}\rangle}{\sqrt{d}\, T}\Big),\qquad
        \mathbf{o}_{i,h} = \operatorname{MLP}_h\Big((1 + \epsilon_h)\, \mathbf{x}_{i,h}
        + \sum_{j} a_{ij,h}\, \mathbf{x}_{j,h}\Big),\qquad
        \mathbf{o}_i = \mathbf{W}_O \big\Vert_h \mathbf{o}_{i,h}

    :math:`\mathbf{x}_{j,h}` is the head slice of the input (no value projection, as released;
    ``value_proj=True`` adds one), :math:`\epsilon_h` is learnable (init ``eps``),
    :math:`\operatorname{MLP}_h` = Linear(:math:`d \to m d`) -> Dropout -> RMSNorm -> SiLU ->
    Linear(:math:`m d \to d`). ``eps_form="released"`` uses the released code's
    :math:`\epsilon_h \mathbf{x}_{i,h}` instead of GIN's :math:`(1 + \epsilon_h)\mathbf{x}_{i,h}`.

    The neighbourhoods are those of the graph: the edges of a molecule (attention restricted to
    edges) or any sequence pattern (full, causal, windowed ``AttentionGraph``). The weighted sum
    is one fused engine call (attention with the head slices as values); in PyG's explain mode or
    with message hooks the messages :math:`a_{ij,h}\,\mathbf{x}_{j,h}` go through ``propagate``
    (``EngineMessagePassing``).

    Args:
        channels: channels :math:`C` (in = out); heads: :math:`H` (divides ``C``).
        mlp_ratio: hidden width multiplier :math:`m` of the per-head MLP.
        dropout: dropout inside the per-head MLP.
        eps: initial :math:`\epsilon`; train_eps: learn it.
        eps_form: ``"gin"`` (:math:`1+\epsilon`) or ``"released"`` (:math:`\epsilon`).
        temperature: :math:`T`; value_proj: project values.

    Forward:
        ``x`` ``[N, C]``, ``edge_index`` (edge_index / sparse adjacency / ``AttentionGraph``) -> ``[N, C]``.
    """

    def __init__(self, channels: int, heads: int = 1, mlp_ratio: int = 1, dropout: float = 0.0, eps: float = 0.0,
                 train_eps: bool = True, eps_form: str = "gin", temperature: float = 1.0, value_proj: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if eps_form not in ("gin", "released"):
            raise ValueError(f"eps_form must be 'gin' or 'released', got {eps_form!r}")
        self.channels, self.heads, self.eps_form, self.initial_eps = channels, heads, eps_form, eps
        self.attn = AttentionAdjacency(channels, heads, temperature, value_proj)
        d = channels // heads
        self.mlp = HeadwiseMLP(heads, d, mlp_ratio * d, d, dropout)
        self.o_proj = torch.nn.Linear(channels, channels)
        eps_tensor = torch.full((heads,), float(eps))
        if train_eps:
            self.eps = torch.nn.Parameter(eps_tensor)
        else:
            self.register_buffer("eps", eps_tensor)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.attn.reset_parameters()
        self.mlp.reset_parameters()
        self.o_proj.reset_parameters()
        with torch.no_grad():
            self.eps.fill_(self.initial_eps)

    def forward(self, x: Tensor, edge_index: Any) -> Tensor:
        q, k, v, graph = self.attn(x, edge_index)
        if self.instrumented:
            agg = self.propagate_messages(attention_weights(q, k, graph), v, graph)
        else:
            agg = graph_attention(q, k, v, graph)                   # sum_j a_ij x_j, fused
        root = (1.0 + self.eps if self.eps_form == "gin" else self.eps)[:, None] * v
        return self.o_proj(self.mlp(root + agg).reshape(x.size(0), -1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, heads={self.heads}, eps_form={self.eps_form})"
