r"""Sparse GIN adapter (Buehler 2025): a GIN on the sharpened, thresholded attention graph.

The graph of a layer is its attention summed over heads and clamped at 1, sharpened and
cut (defaults of the paper):

.. math::
    a_{ij} = \min\Bigl(1, \sum_h A^h_{ij}\Bigr), \qquad
    w_{ij} = \sigma\bigl(10\,(a_{ij} - 0.1)\bigr), \qquad w_{ij} \leftarrow 0 \text{ where } w_{ij} \le 0.6,

restricted to the model's allowed pairs (causal for decoders, padding excluded). Messages
flow from key :math:`j` to query :math:`i` — the released code's edge direction keeps only
self-loops after its causal filter; here :math:`i` aggregates its own keys. The cut
:math:`w > 0.6` is applied as the equivalent :math:`a > 0.1 + \operatorname{logit}(0.6)/10`
*before* any edge is materialised, so only kept edges are built (no per-sample loop).

GIN update with residual on the node features :math:`x` (the attention layer's input):

.. math::
    g_i = x_i + W_2\,\text{PReLU}\bigl(\text{LN}(W_1(\epsilon\, x_i + \textstyle\sum_j w_{ij} x_j))\bigr),
    \qquad \Delta_i = \lambda_l\, \text{RMSNorm}(g_i),

with learnable :math:`\epsilon` (init 0; ``one_plus_eps=True`` gives GIN's
:math:`(1+\epsilon)`), and a per-layer trainable scale :math:`\lambda_l`, initialised linearly
from 0 (first layer) to 0.5 (last) by :func:`~graphattn.adapters.inject_adapters`.
:math:`\Delta` is added to the output of the layer's attention output projection — for
pre-norm models (Llama, ViT) that is the residual stream just before the MLP block, as in
the paper. The RMSNorm gain is zero-initialised so that an injected model starts exactly
as the original (the paper's :math:`\lambda_1 = 0` only silences the first layer).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..functional import aggregate
from ..graph import AttentionGraph
from .capture import AttentionCapture

__all__ = ["SparseGINAdapter", "RMSNorm", "sharpened_attention_graph"]


class RMSNorm(nn.Module):
    r""":math:`g \odot x / \sqrt{\operatorname{mean}(x^2) + \epsilon}` with gain ``g`` (init ``gain_init``)."""

    def __init__(self, dim: int, eps: float = 1e-6, gain_init: float = 1.0):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.full((dim,), float(gain_init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def sharpened_attention_graph(capture: AttentionCapture, sharpness: float = 10.0, shift: float = 0.1,
                              cutoff: float = 0.6) -> AttentionGraph:
    r"""The head-summed attention graph, sharpened and cut at ``cutoff``.

    The sharpened weight of an edge with head-summed attention :math:`a` is :math:`\sigma(k(a - s))`.

    Returns an :class:`AttentionGraph` over the ``B * L`` tokens with ``edge_weight`` ``[E, 1]``.
    """
    if sharpness <= 0 or not 0.0 < cutoff < 1.0:
        raise ValueError(f"need sharpness > 0 and 0 < cutoff < 1, got {sharpness}, {cutoff}")
    threshold = shift + math.log(cutoff / (1 - cutoff)) / sharpness
    if threshold >= 1.0:
        raise ValueError(f"sharpness/shift/cutoff keep no edge (summed attention must exceed {threshold:.3f} > 1)")
    graph = capture.graph(threshold=threshold if threshold >= 0 else None, reduce_heads="sum")
    weight = torch.sigmoid(sharpness * (graph.edge_weight.clamp(max=1.0) - shift))
    return graph.with_edge_weight(weight)


class SparseGINAdapter(nn.Module):
    r"""Sparse GIN adapter of one attention layer (formula in the module docstring).

    Args:
        hidden_size: model width.
        gin_hidden: width of the GIN MLP (155 in the paper).
        scale_init: initial :math:`\lambda_l`.
        eps_init: initial :math:`\epsilon`.
        one_plus_eps: use GIN's :math:`(1 + \epsilon) x_i` instead of the released :math:`\epsilon x_i`.
        sharpness, shift, cutoff: the graph's sharpening :math:`\sigma(k(a - s)) > c`.
    """

    def __init__(self, hidden_size: int, gin_hidden: int = 155, scale_init: float = 0.0, eps_init: float = 0.0,
                 one_plus_eps: bool = False, sharpness: float = 10.0, shift: float = 0.1, cutoff: float = 0.6):
        super().__init__()
        if gin_hidden < 1:
            raise ValueError(f"gin_hidden must be positive, got {gin_hidden}")
        self.one_plus_eps = one_plus_eps
        self.sharpness, self.shift, self.cutoff = sharpness, shift, cutoff
        self.eps = nn.Parameter(torch.tensor(float(eps_init)))
        self.lin1 = nn.Linear(hidden_size, gin_hidden)
        self.norm = nn.LayerNorm(gin_hidden)
        self.act = nn.PReLU()
        self.lin2 = nn.Linear(gin_hidden, hidden_size)
        self.out_norm = RMSNorm(hidden_size, gain_init=0.0)
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def gin(self, x: Tensor, graph: AttentionGraph) -> Tensor:
        """``[N, hidden]`` -> ``[N, hidden]``: aggregation from keys to queries, MLP, residual."""
        agg = aggregate(graph.edge_weight, x.unsqueeze(1), graph).squeeze(1)
        self_term = (1 + self.eps) if self.one_plus_eps else self.eps
        return x + self.lin2(self.act(self.norm(self.lin1(self_term * x + agg))))

    def forward(self, capture: AttentionCapture, project: Callable[[Tensor], Tensor], output: Tensor) -> Tensor:
        """The update ``[B, L, hidden]`` to add to ``output`` (the attention output projection's)."""
        x = capture.hidden_states
        if x is None or x.shape[:2] != output.shape[:2]:
            raise RuntimeError("the attention module's input was not captured for this output projection")
        batch, length, hidden = x.shape
        graph = sharpened_attention_graph(capture, self.sharpness, self.shift, self.cutoff)
        x = x.reshape(batch * length, hidden).to(self.lin1.weight.dtype)
        update = self.scale * self.out_norm(self.gin(x, graph))
        return update.reshape(batch, length, hidden).to(output.dtype)
