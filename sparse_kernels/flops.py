r"""FLOP formulas of the engine's custom ops for :class:`torch.utils.flop_counter.FlopCounterMode`.

Registered with :func:`torch.utils.flop_counter.register_flop_formula` when :mod:`sparse_kernels` is
imported, so that ``FlopCounterMode`` counts the fused attention and the unfused ops like PyTorch's own
matmuls and SDPA. Eager calls reach the counter too: under a ``TorchDispatchMode`` the CSR path runs
the custom ops instead of calling the kernels directly (``sparse_kernels.ops._through_ops``). The
dense-blocks path runs matmuls (or SDPA), which PyTorch counts itself.

Conventions: a multiply and an add are two FLOPs, so a length-:math:`D` dot product costs :math:`2D`;
an exponential, logarithm, comparison (LeakyReLU) or division is one FLOP; integer work (index
arithmetic, the dropout mask's hash) costs none. The formulas read the shapes of a call:
:math:`E` edges, :math:`H` heads, :math:`D` channels of ``q``/``k``, :math:`D_v` of ``v``,
:math:`N` destination rows; per edge and head (:math:`EH` times):

**Forward** (:func:`attention_fwd_flops`): score + normaliser + dropout + aggregation, where

* score ``"dot"`` :math:`\text{scale}\,\langle q_i, k_j + e^k\rangle + b`: :math:`2D` (dot product)
  :math:`+ 1` (scale) :math:`[+D` with ``edge_k``] :math:`[+1` with ``bias``];
* score ``"gat"`` :math:`\operatorname{LeakyReLU}(q_i + k_j + b)` (:math:`D = 1`): :math:`2\ [+1]`;
* score ``"gatv2"`` :math:`\sum_d \text{att}_d \operatorname{LeakyReLU}(q_i + k_j + e^k)_d + b`:
  :math:`D` (sum) :math:`+ D` (LeakyReLU) :math:`+ 2D` (``att`` dot) :math:`[+D]\ [+1]` :math:`= 4D`;
* normaliser (:data:`NORMALISER_FWD`): softmax :math:`e^{s - m_i}` (2), the row sum (1), the
  division (1) = 4; sigmoid :math:`1/(1 + e^{-s})` = 3; softplus :math:`\log(1 + e^{s})` (3), the row
  sum and the division = 5;
* dropout: the keep scale, 1 (when active);
* aggregation :math:`\sum_j w_{ij}(v_j + e^v)`: :math:`2D_v\ [+D_v` with ``edge_v``].

The dot-product softmax attention without per-edge inputs costs :math:`EH(4D + 6)` for
:math:`D = D_v`: within 5% of the usual :math:`4EHD` (score SDDMM + SpMM) from :math:`D = 32`.

**Backward** (:func:`attention_bwd_flops`): the kernels recompute the score and the weight, then

* :math:`\partial a = \langle \partial o_i, v_j + e^v\rangle`: :math:`2D_v\ [+D_v]`; dropout: 2;
* normaliser (:data:`NORMALISER_BWD`, the weight's recomputation included): softmax
  :math:`e^{s - \text{lse}}` (2) and :math:`\partial s = a(\partial a - \delta_i)` (2) = 4; sigmoid
  :math:`a` (3) and :math:`\partial a\, a(1 - a)` (3) = 6; softplus the weight (5) and
  :math:`\partial s = \sigma(s)(\partial a - \delta_i)/Z_i` (4) = 9; softmax and softplus also form
  :math:`\delta_i = \langle \partial o_i, o_i\rangle`, :math:`2 N H D_v`;
* :math:`\partial v_j \mathrel{+}= w\, \partial o_i`: :math:`2D_v`;
  :math:`\partial e^v = w\, \partial o_i`: :math:`D_v`;
* score gradients: ``"dot"`` :math:`\partial q_i \mathrel{+}= \partial s\,(k_j + e^k)` and
  :math:`\partial k_j \mathrel{+}= \partial s\, q_i` (:math:`2D` each) and the scale (1),
  :math:`\partial e^k = \partial s\, q_i` (:math:`D`); ``"gat"``: the LeakyReLU derivative and two
  accumulations, 3; ``"gatv2"``: :math:`\partial z = \partial s\,\text{att}\,\operatorname{LeakyReLU}'(z)`
  (:math:`2D`), :math:`\partial q`, :math:`\partial k` (:math:`D` each), :math:`\partial\text{att}
  \mathrel{+}= \partial s \operatorname{LeakyReLU}(z)` (:math:`2D`) = :math:`6D`.

For the dot-product softmax this is :math:`EH(6D + 4D_v + 6) + 2NHD_v`, about 2.5 times the forward,
as for dense attention (five matrix products against two).

**Unfused ops**: ``sddmm`` and ``spmm`` :math:`2EHD`; ``edge_softmax`` and ``edge_softmax_bwd``
:math:`EH` times the normaliser's forward and backward cost (their autograd runs these ops, so a
backward through them is counted as it runs).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.flop_counter import register_flop_formula

from . import ops as _ops  # noqa: F401  (defines the custom ops counted here)
from .call import FLAT_FIELDS, KernelCall

__all__ = ["NORMALISER_FWD", "NORMALISER_BWD", "attention_fwd_flops", "attention_bwd_flops"]

#: FLOPs per edge and head of each normaliser's forward (see the module docstring).
NORMALISER_FWD = {"softmax": 4, "sigmoid": 3, "softplus": 5}
#: FLOPs per edge and head of each normaliser's backward, the weight's recomputation included.
NORMALISER_BWD = {"softmax": 4, "sigmoid": 6, "softplus": 9}

_BWD_PREFIX = ("out", "stat", "grad_out")


def _call(args: Sequence[Any], kwargs: dict, prefix: tuple[str, ...] = ()) -> KernelCall:
    """The :class:`KernelCall` of a fused op's arguments (tensors replaced by their shapes), positional
    or by name."""
    names = prefix + FLAT_FIELDS
    values = dict(zip(names, args), **kwargs)
    return KernelCall.from_flat([values.get(name) for name in FLAT_FIELDS])


def _score_fwd(call: KernelCall, d: int) -> int:
    i, score = call.inputs, call.options.score
    extra = (d if i.edge_k is not None else 0) + (1 if i.bias is not None else 0)
    return {"dot": 2 * d + 1, "gat": 2, "gatv2": 4 * d}[score] + extra


def attention_fwd_flops(call: KernelCall) -> int:
    """FLOPs of one fused attention forward (``call`` holds shapes or tensors)."""
    i = call.inputs
    num_edges, (_, heads, d), dv = call.graph.col[0], i.q[:3], i.v[2]
    per_edge = (_score_fwd(call, d) + NORMALISER_FWD[call.options.normalizer] + (1 if call.dropout_active else 0)
                + 2 * dv + (dv if call.edge_v is not None else 0))
    return num_edges * heads * per_edge


def attention_bwd_flops(call: KernelCall) -> int:
    """FLOPs of one fused attention backward (``call`` holds shapes or tensors)."""
    i, o = call.inputs, call.options
    num_edges, (rows, heads, d), dv = call.graph.col[0], i.q[:3], i.v[2]
    edge_v = call.edge_v is not None
    score_grads = {"dot": 4 * d + 1 + (d if i.edge_k is not None else 0), "gat": 3, "gatv2": 6 * d}[o.score]
    per_edge = (_score_fwd(call, d) + NORMALISER_BWD[o.normalizer] + (2 if call.dropout_active else 0)
                + 2 * dv + (dv if edge_v else 0)          # d a
                + 2 * dv + (dv if edge_v else 0)          # d v, d e^v
                + score_grads)
    per_row = 2 * dv if o.normalizer != "sigmoid" else 0
    return num_edges * heads * per_edge + rows * heads * per_row


def _shapes(call: KernelCall) -> KernelCall:
    """``call`` with every tensor replaced by its shape (``FlopCounterMode`` passes shapes already;
    this also accepts tensors)."""
    return KernelCall.from_flat([x.shape if isinstance(x, torch.Tensor) else x for x in call.flat()])


@register_flop_formula(torch.ops.sparse_kernels.attention_fwd)
def _attention_fwd(*args, out_shape=None, **kwargs) -> int:
    return attention_fwd_flops(_shapes(_call(args, kwargs)))


@register_flop_formula(torch.ops.sparse_kernels.attention_bwd)
def _attention_bwd(*args, out_shape=None, **kwargs) -> int:
    return attention_bwd_flops(_shapes(_call(args, kwargs, _BWD_PREFIX)))


@register_flop_formula([torch.ops.sparse_kernels.sddmm, torch.ops.sparse_kernels.spmm])
def _sddmm_spmm(a_shape, b_shape, ptr_shape, gather_shape, segment_shape, out_shape=None, **kwargs) -> int:
    """``sddmm(a [N, H, D], b, ...)`` -> ``[E, H]`` and ``spmm(w [E, H], x [N, H, D], ...)``: :math:`2EHD`."""
    heads, d = b_shape[1], b_shape[2]
    return 2 * gather_shape[0] * heads * d


@register_flop_formula(torch.ops.sparse_kernels.edge_softmax)
def _edge_softmax(scores_shape, ptr_shape, segment_shape, normalizer, out_shape=None, **kwargs) -> int:
    return scores_shape[0] * scores_shape[1] * NORMALISER_FWD[normalizer]


@register_flop_formula(torch.ops.sparse_kernels.edge_softmax_bwd)
def _edge_softmax_bwd(grad_shape, weights_shape, scores_shape, stat_shape, ptr_shape, segment_shape, normalizer,
                      out_shape=None, **kwargs) -> int:
    return scores_shape[0] * scores_shape[1] * NORMALISER_BWD[normalizer]
