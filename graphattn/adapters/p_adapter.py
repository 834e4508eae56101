r"""p-adapter (Wu et al., AAAI 2024): p-Laplacian message passing on the attention graph.

One step of p-Laplacian message passing over the attention probabilities :math:`A_{ij}`
(per head, :math:`\epsilon = 10^{-8}`):

.. math::
    M_{ij} = A_{ij}\, \bigl\lVert \sqrt{A_{ij} + \epsilon}\,(f_i - f_j) + \epsilon \bigr\rVert^{p-2},
    \qquad
    \alpha_i = \frac{1}{\sum_j M_{ij} + 2\mu/p}, \qquad \beta_i = \alpha_i\, \frac{2\mu}{p},

.. math::
    f'_i = \alpha_i \sum_j M_{ij} f_j + \beta_i f_i .

Everything is per edge of the (sparse) attention graph: the norms come from a custom
autograd function that gathers :math:`f_i - f_j` in chunks in the forward *and* backward
pass (saving only ``[E, H]`` values), and :math:`\sum_j M_{ij} f_j` is the engine's
:func:`graphattn.functional.aggregate`. No :math:`n \times n \times d` tensor is ever formed. The
:math:`+\epsilon` inside the norm keeps it positive when :math:`f_i = f_j` (self-loops,
duplicate tokens), so :math:`p < 2` gives large but finite weights, never NaN.

The adapter (:class:`PAdapter`) sits after a layer's frozen output projection :math:`W_o`:
node features are :math:`f = \text{split\_heads}(W_\downarrow W_o v)` for the value tokens
:math:`v`, and the layer's output :math:`h = W_o(\text{attention})` becomes

.. math::
    h + W_\uparrow\bigl(\text{GELU}(W_g h) \odot \text{merge\_heads}(f')\bigr),

with :math:`W_\uparrow` zero-initialised (an injected model starts identical to the
original), learnable :math:`p` and :math:`\mu = \mu_0 (2 + \tanh\theta)`, :math:`\theta = 0`.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import aggregate
from ..graph import AttentionGraph
from .capture import AttentionCapture

__all__ = ["p_laplacian_step", "edge_diff_norm", "PAdapter"]

#: Elements of one ``[C, H, d]`` chunk of gathered differences.
CHUNK_ELEMENTS = 1 << 22


def _chunks(num_edges: int, width: int):
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for start in range(0, num_edges, step):
        yield slice(start, min(start + step, num_edges))


class _EdgeDiffNorm(torch.autograd.Function):
    r""":math:`r_e = \lVert \sqrt{a_e + \epsilon}(f_{\text{dst}(e)} - f_{\text{src}(e)}) + \epsilon \rVert`,
    ``[E, H]``; the backward pass re-gathers the differences chunk by chunk."""

    @staticmethod
    def forward(ctx, f: Tensor, a: Tensor, dst: Tensor, src: Tensor, eps: float) -> Tensor:
        r = f.new_empty(a.shape)
        scale = (a + eps).sqrt()
        for c in _chunks(a.size(0), f.size(1) * f.size(2)):
            u = scale[c].unsqueeze(-1) * (f[dst[c]] - f[src[c]]) + eps
            r[c] = u.norm(dim=-1)
        ctx.save_for_backward(f, a, dst, src, r)
        ctx.eps = eps
        return r

    @staticmethod
    def backward(ctx, grad: Tensor):
        f, a, dst, src, r = ctx.saved_tensors
        eps = ctx.eps
        scale = (a + eps).sqrt()
        df = torch.zeros_like(f) if ctx.needs_input_grad[0] else None
        da = torch.zeros_like(a) if ctx.needs_input_grad[1] else None
        g = grad / r.clamp_min(torch.finfo(r.dtype).tiny)           # dr/du = u / r
        for c in _chunks(a.size(0), f.size(1) * f.size(2)):
            diff = f[dst[c]] - f[src[c]]
            u = scale[c].unsqueeze(-1) * diff + eps
            gu = g[c].unsqueeze(-1) * u                             # dL/du
            if df is not None:
                gf = gu * scale[c].unsqueeze(-1)
                df.index_add_(0, dst[c], gf)
                df.index_add_(0, src[c], -gf)
            if da is not None:
                da[c] = (gu * diff).sum(-1) / (2 * scale[c])
        return df, da, None, None, None


def edge_diff_norm(f: Tensor, weight: Tensor, graph: AttentionGraph, eps: float = 1e-8) -> Tensor:
    r"""Per-edge :math:`\lVert \sqrt{A_{ij}+\epsilon}(f_i - f_j) + \epsilon\rVert`, ``[E, H]``.

    Args:
        f: ``[N, H, d]`` node features; weight: ``[E, H]`` edge weights (the graph's edge order).
    """
    src, dst = graph.edge_index
    return _EdgeDiffNorm.apply(f, weight, dst, src, eps)


def p_laplacian_step(f: Tensor, graph: AttentionGraph, p: Union[Tensor, float], mu: Union[Tensor, float],
                     eps: float = 1e-8) -> Tensor:
    r"""One p-Laplacian message-passing step (formula in the module docstring).

    Args:
        f: ``[N, H, d]`` node features (sources and destinations are the same nodes).
        graph: a square :class:`AttentionGraph` whose ``edge_weight`` ``[E, H]`` (non-negative)
            holds :math:`A_{ij}`.
        p: the exponent (scalar tensor or float, :math:`p \ge 1`).
        mu: the self-term weight :math:`\mu > 0` (scalar tensor or float).
        eps: :math:`\epsilon` of the formula.

    Returns:
        ``[N, H, d]``. A node without edges keeps its features (:math:`\alpha_i M = 0`,
        :math:`\beta_i = 1`).
    """
    if not isinstance(f, Tensor) or f.dim() != 3 or not f.dtype.is_floating_point:
        raise ValueError("f must be a floating tensor of shape [num_nodes, heads, channels]")
    if not isinstance(graph, AttentionGraph) or graph.edge_weight is None:
        raise ValueError("graph must be an AttentionGraph with edge_weight [E, H]")
    if graph.is_bipartite or graph.num_dst_nodes != f.size(0):
        raise ValueError(f"graph must be square with {f.size(0)} nodes, got {graph}")
    weight = graph.edge_weight
    if weight.dim() == 1:
        weight = weight.unsqueeze(-1)
    if weight.size(1) not in (1, f.size(1)):
        raise ValueError(f"edge_weight has {weight.size(1)} channels but f has {f.size(1)} heads")
    weight = weight.expand(-1, f.size(1)).to(f.dtype)
    norm = edge_diff_norm(f, weight, graph, eps)
    message = weight * norm.pow(p - 2)                                   # M_ij, [E, H]
    degree = f.new_zeros(f.size(0), f.size(1)).index_add(0, graph.edge_index[1], message)
    self_weight = 2 * mu / p
    alpha = 1.0 / (degree + self_weight)
    out = alpha.unsqueeze(-1) * aggregate(message, f, graph) + (alpha * self_weight).unsqueeze(-1) * f
    return out


class PAdapter(nn.Module):
    r"""The p-adapter of one attention layer (placed after its output projection).

    Args:
        hidden_size: model width.
        num_heads: attention heads (the bottleneck is split into as many heads).
        bottleneck: adapter width (a multiple of ``num_heads``), e.g. ``hidden_size // 8``.
        p_init: initial :math:`p` (1.25 to 1.75 in the paper).
        mu0: :math:`\mu_0` of :math:`\mu = \mu_0(2 + \tanh\theta)`.
        eps: :math:`\epsilon` of the formula.
        threshold, top_k: sparsify the attention graph (see
            :func:`~graphattn.adapters.attention_graph`); ``None`` keeps every allowed edge
            as in the paper.
    """

    def __init__(self, hidden_size: int, num_heads: int, bottleneck: int, p_init: float = 1.5,
                 mu0: float = 0.1, eps: float = 1e-8, threshold: Optional[float] = None,
                 top_k: Optional[int] = None):
        super().__init__()
        if bottleneck < 1 or bottleneck % num_heads != 0:
            raise ValueError(f"bottleneck ({bottleneck}) must be a positive multiple of num_heads ({num_heads})")
        if p_init < 1.0:
            raise ValueError(f"p_init must be >= 1, got {p_init}")
        if mu0 <= 0:
            raise ValueError(f"mu0 must be positive, got {mu0}")
        self.num_heads, self.eps, self.mu0 = num_heads, eps, mu0
        self.threshold, self.top_k = threshold, top_k
        self.down = nn.Linear(hidden_size, bottleneck)
        self.gate = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.p = nn.Parameter(torch.tensor(float(p_init)))
        self.theta = nn.Parameter(torch.zeros(()))

    @property
    def mu(self) -> Tensor:
        return self.mu0 * (2 + torch.tanh(self.theta))

    def forward(self, capture: AttentionCapture, project: Callable[[Tensor], Tensor], output: Tensor) -> Tensor:
        """The update ``[B, L, hidden]`` to add to ``output``, the frozen output projection
        ``project`` (:math:`W_o`) of the captured attention."""
        value = capture.value_heads()                                   # [B, H, L, dv]
        batch, heads, length, _ = value.shape
        if output.shape[:2] != (batch, length):
            raise RuntimeError(f"captured attention ({batch} x {length} tokens) does not match the "
                               f"output projection's output {list(output.shape)}")
        nodes = project(value.transpose(1, 2).reshape(batch, length, -1))
        f = self.down(nodes.to(self.down.weight.dtype)).reshape(batch * length, self.num_heads, -1)
        if heads != self.num_heads:
            raise RuntimeError(f"adapter has {self.num_heads} heads, the attention {heads}")
        graph = capture.graph(threshold=self.threshold, top_k=self.top_k)
        f = p_laplacian_step(f, graph, self.p, self.mu, self.eps).reshape(batch, length, -1)
        x = output.to(self.gate.weight.dtype)
        return self.up(F.gelu(self.gate(x)) * f).to(output.dtype)
