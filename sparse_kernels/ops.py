r"""The engine's public ops, their ``torch.library`` custom ops, fake kernels and autograd.

Public functions (per-edge tensors always in the **user's edge order**, the order of the
``edge_index`` the :class:`~sparse_kernels.csr.CSR` was built from; the CSR order is internal):

* ``attention`` — :math:`o_i = \sum_j w_{ij} (v_j + e^v_{ij})`,
  :math:`w = \operatorname{dropout}(\operatorname{normalise}_j(\text{scale}\,\langle q_i, k_j + e^k_{ij}\rangle
  + b_{ij}))`, run on the path the dispatcher picks (:mod:`sparse_kernels.dispatch`);
* ``attention_with_stats`` — the CSR path, also returning the per-row statistic;
* ``sddmm`` — per-edge dot products :math:`s_{ij} = \langle a_i, b_j\rangle`;
* ``edge_softmax`` — per-destination normalisation of edge scores;
* ``spmm`` — :math:`o_i = \sum_{j} w_{ij} x_j`;
* ``elementwise_dropout`` — counter-based dropout of a dense tensor (:mod:`sparse_kernels.dropout`),
  the mask regenerated from the seed in the backward, never stored.

The CSR path runs the custom ops ``torch.ops.sparse_kernels.attention_fwd``/``attention_bwd`` under
``torch.compile`` and under a ``TorchDispatchMode`` such as ``FlopCounterMode`` (fake kernels, so
``torch.compile(fullgraph=True)`` traces through them with symbolic sizes) and, in eager mode, the same
kernels through a lean :class:`torch.autograd.Function`; both share one backward (``_backward``).
A call is one :class:`~sparse_kernels.call.KernelCall` (typed records of the inputs, the graph index and
the options), flattened only into the custom ops' arguments. Each implementation asks the dispatcher
for the kernel of its device, dtype and features: the plain-PyTorch reference
(``sparse_kernels.reference``, registered here as ``"reference"`` for every device), the compiled CPU
kernels, the Triton kernels. Kernels take ``attention_fwd(call) -> (out, stat)`` and
``attention_bwd(call, out, stat, grad_out) -> Grads``. The unfused ops' index tensors of an edge list
travel as ``(ptr, gather, segment)``: offsets, the node read by each edge and the node it reduces into;
``(rowptr, col, row)`` for the CSR and ``(colptr, csc.row, csc.col)`` for its transpose.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import dispatch, dropout as drop, reference
from .csr import CSR
from .call import FLAT_FIELDS, SCORES, Grads, KernelCall, op_schema
from .dispatch import AttentionCall, Features

__all__ = ["attention", "attention_with_stats", "explain", "sddmm", "edge_softmax", "spmm", "elementwise_dropout",
           "validate_attention_inputs", "REFERENCE_KERNELS"]

_LIB = "sparse_kernels"


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- attention
# Kernels receive one KernelCall (sparse_kernels.call); the custom ops take its fields flat, in the order
# and with the schema that sparse_kernels.call writes from the records.
def _attention_fwd_reference(call: KernelCall) -> tuple[Tensor, Tensor]:
    i, g, o = call.inputs, call.graph, call.options
    out, stat = reference.attention_forward(
        i.q, i.k, i.v, g.row, g.col, i.bias, o.scale, o.normalizer, g.rowptr, eid=g.eid, edge_k=i.edge_k,
        edge_v=call.edge_v, seed=i.seed if call.dropout_active else None, p_threshold=o.p_threshold,
        keep_scale=o.keep_scale, score=o.score, negative_slope=o.negative_slope, att=i.att)
    return out, stat.to(_stat_dtype(i.q.dtype))


def _attention_bwd_reference(call: KernelCall, out: Tensor, stat: Tensor, grad_out: Tensor) -> Grads:
    i, g, o = call.inputs, call.graph, call.options
    dq, dk, dv, dbias, dek, dev, datt = reference.attention_backward(
        grad_out, i.q, i.k, i.v, out, stat, g.row, g.col, i.bias, o.scale, o.normalizer, g.rowptr,
        (g.colptr, g.row_t, g.perm_t), eid=g.eid, edge_k=i.edge_k, edge_v=call.edge_v,
        seed=i.seed if call.dropout_active else None, p_threshold=o.p_threshold, keep_scale=o.keep_scale,
        score=o.score, negative_slope=o.negative_slope, att=i.att)
    if o.shared_edge:
        dek, dev = dek + dev, None
    return Grads(dq, dk, dv, dbias, dek, dev, datt)


def _kernel(op: str, call: KernelCall) -> Callable:
    return dispatch.kernel(op, call.inputs.q.device.type, call.features)


torch.library.define(f"{_LIB}::attention_fwd", op_schema())
torch.library.define(f"{_LIB}::attention_bwd", op_schema("Tensor out, Tensor stat, Tensor grad_out", "Tensor[]"))


@torch.library.impl(f"{_LIB}::attention_fwd", "CompositeExplicitAutograd")
def _attention_fwd_op(*flat) -> tuple[Tensor, Tensor]:
    call = KernelCall.from_flat(flat)
    return _kernel("attention_fwd", call)(call)


@torch.library.register_fake(f"{_LIB}::attention_fwd")
def _(*flat):
    i = KernelCall.from_flat(flat).inputs
    return (i.q.new_empty(i.q.shape[0], i.q.shape[1], i.v.shape[2]),
            i.q.new_empty(i.q.shape[0], i.q.shape[1], dtype=_stat_dtype(i.q.dtype)))


@torch.library.impl(f"{_LIB}::attention_bwd", "CompositeExplicitAutograd")
def _attention_bwd_op(out: Tensor, stat: Tensor, grad_out: Tensor, *flat) -> list[Tensor]:
    call = KernelCall.from_flat(flat)
    return list(_kernel("attention_bwd", call)(call, out, stat, grad_out).flat(call.inputs.q))


@torch.library.register_fake(f"{_LIB}::attention_bwd")
def _(out, stat, grad_out, *flat):
    call = KernelCall.from_flat(flat)
    i = call.inputs
    like = (i.q, i.k, i.v, i.bias, i.edge_k, None if call.options.shared_edge else i.edge_v, i.att)
    return [i.q.new_empty(0) if x is None else torch.empty_like(x) for x in like]


def _through_ops() -> bool:
    """Whether the fused kernels must run as the custom ops: while ``torch.compile`` traces, and under a
    ``TorchDispatchMode`` (``FlopCounterMode``, memory logs), which sees ops, not ctypes calls."""
    return torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None


def _backward(call: KernelCall, out: Tensor, stat: Tensor, grad_out: Tensor) -> tuple[Optional[Tensor], ...]:
    """The one backward of the fused attention (custom-op autograd and eager ``Function`` alike): the
    gradients of ``(q, k, v, bias, edge_k, edge_v, att)``, ``None`` for absent inputs."""
    grad_out = grad_out.contiguous()
    if _through_ops():
        grads = Grads.from_flat(torch.ops.sparse_kernels.attention_bwd(out, stat, grad_out, *call.flat()), call)
    else:
        grads = _kernel("attention_bwd", call)(call, out, stat, grad_out)
    return grads.dq, grads.dk, grads.dv, grads.dbias, grads.dedge_k, grads.dedge_v, grads.datt


#: Positions of the differentiable inputs among the flat fields.
_DIFFERENTIABLE = ("q", "k", "v", "bias", "edge_k", "edge_v", "att")


def _setup(ctx, inputs, output) -> None:
    call = KernelCall.from_flat(inputs)
    out, stat = output
    _save(ctx, call, out, stat)


def _save(ctx, call: KernelCall, out: Tensor, stat: Tensor) -> None:
    flat = call.flat()
    tensor_at = [n for n, x in enumerate(flat) if isinstance(x, Tensor)]
    ctx.save_for_backward(out, stat, *(flat[n] for n in tensor_at))
    ctx.tensor_at, ctx.flat = tensor_at, tuple(None if isinstance(x, Tensor) else x for x in flat)
    ctx.mark_non_differentiable(stat)


def _restore(ctx) -> tuple[KernelCall, Tensor, Tensor]:
    out, stat, *tensors = ctx.saved_tensors
    flat = list(ctx.flat)
    for n, t in zip(ctx.tensor_at, tensors):
        flat[n] = t
    return KernelCall.from_flat(flat), out, stat


def _op_backward(ctx, grad_out, grad_stat):
    call, out, stat = _restore(ctx)
    grads = dict(zip(_DIFFERENTIABLE, _backward(call, out, stat, grad_out)))
    return tuple(grads.get(name) for name in FLAT_FIELDS)


torch.library.register_autograd(f"{_LIB}::attention_fwd", _op_backward, setup_context=_setup)


class _EagerAttention(torch.autograd.Function):
    """The fused kernels with ``_backward``, without the custom-op dispatch (eager mode: the op
    machinery costs about half a millisecond per call in Python, more than the kernels on a batch of
    molecules). Differentiable inputs are arguments; the rest of the call travels in ``meta``."""

    @staticmethod
    def forward(ctx, q, k, v, bias, edge_k, edge_v, att, meta):
        call = _with_tensors(meta, q, k, v, bias, edge_k, edge_v, att)
        out, stat = _kernel("attention_fwd", call)(call)
        _save(ctx, call, out, stat)
        return out, stat

    @staticmethod
    def backward(ctx, grad_out, grad_stat):
        call, out, stat = _restore(ctx)
        return (*_backward(call, out, stat, grad_out), None)


def _with_tensors(call: KernelCall, *tensors: Optional[Tensor]) -> KernelCall:
    """``call`` with its differentiable inputs replaced (the autograd ``Function`` sees them as arguments)."""
    inputs = dataclasses.replace(call.inputs, **dict(zip(_DIFFERENTIABLE, tensors)))
    return KernelCall(inputs, call.graph, call.options)


def _csr_attention(call: AttentionCall) -> tuple[Tensor, Tensor]:
    """The CSR path: the fused kernels (chosen per device, dtype and features)."""
    kernel_call = call.kernel_call()
    if _through_ops():
        return torch.ops.sparse_kernels.attention_fwd(*kernel_call.flat())
    i = kernel_call.inputs
    return _EagerAttention.apply(i.q, i.k, i.v, i.bias, i.edge_k, i.edge_v, i.att, kernel_call)


# --------------------------------------------------------------------------- sddmm / spmm / edge softmax
# Internal ops on edges in CSR order; the public functions below convert from and to the user's order.
def _sddmm_reference(a: Tensor, b: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    return reference.sddmm(a, b, segment, gather, ptr).to(a.dtype)


@torch.library.custom_op(f"{_LIB}::sddmm", mutates_args=())
def _sddmm(a: Tensor, b: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    return dispatch.kernel("sddmm", a.device.type, Features(a.dtype))(a, b, ptr, gather, segment)


@_sddmm.register_fake
def _(a, b, ptr, gather, segment):
    return a.new_empty(gather.shape[0], a.shape[1])


def _spmm_reference(weight: Tensor, x: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    return reference.spmm(weight, x, segment, gather, ptr.numel() - 1, ptr).to(x.dtype)


@torch.library.custom_op(f"{_LIB}::spmm", mutates_args=())
def _spmm(weight: Tensor, x: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    return dispatch.kernel("spmm", x.device.type, Features(x.dtype))(weight, x, ptr, gather, segment)


@_spmm.register_fake
def _(weight, x, ptr, gather, segment):
    return x.new_empty(ptr.shape[0] - 1, x.shape[1], x.shape[2])


def _edge_softmax_reference(scores: Tensor, ptr: Tensor, segment: Tensor, normalizer: str) -> tuple[Tensor, Tensor]:
    weights, stat = reference.edge_normalize(scores, segment, ptr.numel() - 1, normalizer)
    return weights.to(scores.dtype), stat.to(_stat_dtype(scores.dtype))


@torch.library.custom_op(f"{_LIB}::edge_softmax", mutates_args=())
def _edge_softmax(scores: Tensor, ptr: Tensor, segment: Tensor, normalizer: str) -> tuple[Tensor, Tensor]:
    fn = dispatch.kernel("edge_softmax", scores.device.type, Features(scores.dtype, normalizer))
    return fn(scores, ptr, segment, normalizer)


@_edge_softmax.register_fake
def _(scores, ptr, segment, normalizer):
    return torch.empty_like(scores), scores.new_empty(ptr.shape[0] - 1, scores.shape[1],
                                                      dtype=_stat_dtype(scores.dtype))


def _edge_softmax_bwd_reference(grad_weights: Tensor, weights: Tensor, scores: Tensor, stat: Tensor,
                                ptr: Tensor, segment: Tensor, normalizer: str) -> Tensor:
    return reference.edge_normalize_backward(grad_weights, weights, scores, stat, segment,
                                             normalizer).to(scores.dtype)


@torch.library.custom_op(f"{_LIB}::edge_softmax_bwd", mutates_args=())
def _edge_softmax_bwd(grad_weights: Tensor, weights: Tensor, scores: Tensor, stat: Tensor, ptr: Tensor,
                      segment: Tensor, normalizer: str) -> Tensor:
    fn = dispatch.kernel("edge_softmax_bwd", scores.device.type, Features(scores.dtype, normalizer))
    return fn(grad_weights, weights, scores, stat, ptr, segment, normalizer)


@_edge_softmax_bwd.register_fake
def _(grad_weights, weights, scores, stat, ptr, segment, normalizer):
    return torch.empty_like(scores)


# The unfused ops carry the transpose as extra inputs so that their backward needs no sort.
class _SddmmFn(torch.autograd.Function):
    """``sddmm`` with gradients: ``da = spmm(ds, b)``, ``db = spmm^T(ds, a)``."""

    @staticmethod
    def forward(a, b, csr_t):
        rowptr, col, row, colptr, row_t, col_t, perm_t = csr_t
        return torch.ops.sparse_kernels.sddmm(a, b, rowptr, col, row)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, csr_t = inputs
        ctx.save_for_backward(a, b, *csr_t)

    @staticmethod
    def backward(ctx, grad):
        a, b, rowptr, col, row, colptr, row_t, col_t, perm_t = ctx.saved_tensors
        grad = grad.contiguous()
        da = db = None
        if ctx.needs_input_grad[0]:
            da = torch.ops.sparse_kernels.spmm(grad, b, rowptr, col, row)
        if ctx.needs_input_grad[1]:
            db = torch.ops.sparse_kernels.spmm(grad[perm_t], a, colptr, row_t, col_t)
        return da, db, None


class _SpmmFn(torch.autograd.Function):
    """``spmm`` with gradients: ``dw = sddmm(do, x)``, ``dx = spmm^T(w, do)``."""

    @staticmethod
    def forward(weight, x, csr_t):
        rowptr, col, row, colptr, row_t, col_t, perm_t = csr_t
        return torch.ops.sparse_kernels.spmm(weight, x, rowptr, col, row)

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, x, csr_t = inputs
        ctx.save_for_backward(weight, x, *csr_t)

    @staticmethod
    def backward(ctx, grad):
        weight, x, rowptr, col, row, colptr, row_t, col_t, perm_t = ctx.saved_tensors
        grad = grad.contiguous()
        dw = dx = None
        if ctx.needs_input_grad[0]:
            dw = torch.ops.sparse_kernels.sddmm(grad, x, rowptr, col, row)
        if ctx.needs_input_grad[1]:
            dx = torch.ops.sparse_kernels.spmm(weight[perm_t], grad, colptr, row_t, col_t)
        return dw, dx, None


class _EdgeSoftmaxFn(torch.autograd.Function):
    @staticmethod
    def forward(scores, ptr, segment, normalizer):
        return torch.ops.sparse_kernels.edge_softmax(scores, ptr, segment, normalizer)

    @staticmethod
    def setup_context(ctx, inputs, output):
        scores, ptr, segment, normalizer = inputs
        weights, stat = output
        ctx.save_for_backward(weights, scores, stat, ptr, segment)
        ctx.normalizer = normalizer
        ctx.mark_non_differentiable(stat)

    @staticmethod
    def backward(ctx, grad_weights, grad_stat):
        weights, scores, stat, ptr, segment = ctx.saved_tensors
        ds = torch.ops.sparse_kernels.edge_softmax_bwd(grad_weights.contiguous(), weights, scores, stat,
                                                       ptr, segment, ctx.normalizer)
        return ds, None, None, None


# --------------------------------------------------------------------------- element-wise dropout
# out = x * keep(seed, element index) * keep_scale; the backward is the same op on the gradient (the op is linear
# and its own adjoint), so nothing is saved but the seed. Eager calls skip the custom-op dispatch (as
# _EagerAttention does): a model draws several masks per step, each costing more in the op machinery than in the
# kernel.
def _run_dropout(x: Tensor, seed: Tensor, p_threshold: int, keep_scale: float) -> Tensor:
    """The kernel of ``x``'s device and dtype on contiguous ``x`` (so the output is contiguous, as the fake's)."""
    kernel = dispatch.kernel("elementwise_dropout", x.device.type, Features(x.dtype))
    return kernel(x.contiguous(), seed, p_threshold, keep_scale)


@torch.library.custom_op(f"{_LIB}::elementwise_dropout", mutates_args=())
def _elementwise_dropout(x: Tensor, seed: Tensor, p_threshold: int, keep_scale: float) -> Tensor:
    return _run_dropout(x, seed, p_threshold, keep_scale)


@_elementwise_dropout.register_fake
def _(x, seed, p_threshold, keep_scale):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _dropout_setup(ctx, inputs, output) -> None:
    ctx.seed, ctx.p_threshold, ctx.keep_scale = inputs[1], inputs[2], inputs[3]


def _dropout_op_backward(ctx, grad):
    dx = torch.ops.sparse_kernels.elementwise_dropout(grad, ctx.seed, ctx.p_threshold, ctx.keep_scale)
    return dx, None, None, None


_elementwise_dropout.register_autograd(_dropout_op_backward, setup_context=_dropout_setup)


class _EagerDropout(torch.autograd.Function):
    """The element-wise dropout in eager mode; its backward is itself (so twice differentiable)."""

    @staticmethod
    def forward(ctx, x, seed, p_threshold, keep_scale):
        ctx.seed, ctx.p_threshold, ctx.keep_scale = seed, p_threshold, keep_scale
        return _run_dropout(x, seed, p_threshold, keep_scale)

    @staticmethod
    def backward(ctx, grad):
        return _EagerDropout.apply(grad, ctx.seed, ctx.p_threshold, ctx.keep_scale), None, None, None


def elementwise_dropout(x: Tensor, p: float, seed: Optional[Tensor] = None) -> Tensor:
    r"""Dropout of a dense tensor with the engine's counter-based mask: element :math:`t` (row-major index)
    is kept iff :math:`\operatorname{keep}(\text{seed}, t)` (:mod:`sparse_kernels.dropout`) and scaled by
    :math:`1 / (1 - p)`, else 0; the backward regenerates the mask from ``seed`` (nothing is saved).

    Args:
        x: a floating-point tensor of any shape (any device; compiled kernels on the CPU for float32/float64).
        p: the probability of dropping an element, in :math:`[0, 1]` (1: all zero).
        seed: one-element int64 tensor on ``x``'s device (default: drawn from PyTorch's generator,
            :func:`~sparse_kernels.dropout.new_seed`).

    Returns:
        A new contiguous tensor of ``x``'s shape and dtype.
    """
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"x must be a floating-point tensor, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    p_threshold, keep_scale = (1 << 24, 0.0) if p == 1.0 else (drop.threshold(p), drop.keep_scale(p))
    if seed is None:
        seed = drop.new_seed(x.device)
    if _through_ops():
        return torch.ops.sparse_kernels.elementwise_dropout(x, seed, p_threshold, keep_scale)
    return _EagerDropout.apply(x, seed, p_threshold, keep_scale)


# --------------------------------------------------------------------------- validation
def _check_features(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [num_nodes, heads, channels], got {list(x.shape)}")
    if x.size(1) < 1 or x.size(2) < 1:
        raise ValueError(f"{name} must have at least one head and one channel, got shape {list(x.shape)}")


def _check_same_device(**tensors: Optional[Tensor]) -> None:
    items = [(n, t) for n, t in tensors.items() if t is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}; "
                             f"all tensors must be on one device")


def _check_normalizer(normalizer: str) -> None:
    if normalizer not in reference.NORMALIZERS:
        raise ValueError(f"normalizer must be one of {reference.NORMALIZERS}, got {normalizer!r}")


def _check_edge_values(name: str, x: Tensor, csr: CSR, shape: tuple[int, ...]) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {[csr.num_edges, *shape]}, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if tuple(x.shape) != (csr.num_edges, *shape):
        names = ["num_edges", "heads", "channels"][:1 + len(shape)]
        raise ValueError(f"{name} must have shape [{', '.join(names)}] = {[csr.num_edges, *shape]}, "
                         f"got {list(x.shape)}")


def validate_attention_inputs(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor],
                              normalizer: str, edge_k: Optional[Tensor] = None,
                              edge_v: Optional[Tensor] = None, *, score: str = "dot",
                              att: Optional[Tensor] = None) -> None:
    """Raises ``TypeError``/``ValueError`` naming the argument for any inconsistent input."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_features(name, x)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.size(1) == k.size(1) == v.size(1)):
        raise ValueError(f"q, k and v must have the same number of heads, got {q.size(1)}, {k.size(1)}, {v.size(1)}")
    if q.size(2) != k.size(2):
        raise ValueError(f"q and k must have the same channels per head, got {q.size(2)} and {k.size(2)}")
    if k.size(0) != v.size(0):
        raise ValueError(f"k and v must have the same number of source nodes, got {k.size(0)} and {v.size(0)}")
    if q.size(0) != csr.num_dst_nodes:
        raise ValueError(f"q has {q.size(0)} rows but the graph has {csr.num_dst_nodes} destination nodes")
    if k.size(0) != csr.num_src_nodes:
        raise ValueError(f"k has {k.size(0)} rows but the graph has {csr.num_src_nodes} source nodes")
    _check_normalizer(normalizer)
    if bias is not None:
        _check_edge_values("bias", bias, csr, (q.size(1),))
        if bias.dtype != q.dtype:
            raise TypeError(f"bias must have the dtype of q ({q.dtype}), got {bias.dtype}")
        if not torch.compiler.is_compiling() and bool((torch.isnan(bias) | torch.isposinf(bias)).any()):
            raise ValueError("bias contains NaN or +inf (-inf masks an edge; +inf has no normalised limit)")
    for name, x, width in (("edge_k", edge_k, q.size(2)), ("edge_v", edge_v, v.size(2))):
        if x is not None:
            _check_edge_values(name, x, csr, (q.size(1), width))
            if x.dtype != q.dtype:
                raise TypeError(f"{name} must have the dtype of q ({q.dtype}), got {x.dtype}")
    _check_score_inputs(q, edge_k, score, att)
    _check_same_device(q=q, k=k, v=v, graph=csr.col, bias=bias, edge_k=edge_k, edge_v=edge_v, att=att)


def _check_score_inputs(q: Tensor, edge_k: Optional[Tensor], score: str, att: Optional[Tensor]) -> None:
    if score == "gat":
        if q.size(2) != 1:
            raise ValueError(f"the gat score takes q and k of shape [N, heads, 1], got {list(q.shape)}")
        if edge_k is not None:
            raise ValueError("the gat score takes its edge term as bias [E, heads], not edge_k")
    if score == "gatv2":
        if not isinstance(att, Tensor):
            raise TypeError(f"the gatv2 score needs att, a tensor of shape [heads, channels], got {type(att).__name__}")
        if tuple(att.shape) != tuple(q.shape[1:]):
            raise ValueError(f"att must have shape [heads, channels] = {list(q.shape[1:])}, got {list(att.shape)}")
        if att.dtype != q.dtype:
            raise TypeError(f"att must have the dtype of q ({q.dtype}), got {att.dtype}")
    elif att is not None:
        raise ValueError(f"att is the gatv2 score's attention vector; score={score!r} takes none")


# --------------------------------------------------------------------------- public API
def _finite(x: object) -> bool:
    """A finite real number (comparisons only: ``math.isfinite`` breaks ``torch.compile``'s trace)."""
    return isinstance(x, (int, float)) and -math.inf < x < math.inf


def _make_call(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor], edge_k: Optional[Tensor],
               edge_v: Optional[Tensor], scale: Optional[float], normalizer: str, dropout: float,
               seed: Optional[Tensor], score: str, negative_slope: float, att: Optional[Tensor],
               validate: bool) -> AttentionCall:
    if validate:
        validate_attention_inputs(q, k, v, csr, bias, normalizer, edge_k, edge_v, score=score, att=att)
        drop.threshold(dropout)
        if scale is not None and not _finite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        if score != "dot" and scale is not None:
            raise ValueError(f"scale applies to the dot-product score only, got scale={scale!r} with score={score!r}")
        if not _finite(negative_slope):
            raise ValueError(f"negative_slope must be a finite number, got {negative_slope!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1)) if score == "dot" else 1.0
    if dropout > 0.0 and seed is None:
        seed = drop.new_seed(q.device)
    return AttentionCall(q, k, v, csr, bias, edge_k, edge_v, float(scale), normalizer, float(dropout),
                         seed if dropout > 0.0 else None, score, float(negative_slope), att)


def attention(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
              scale: Optional[float] = None, normalizer: str = "softmax", *, edge_k: Optional[Tensor] = None,
              edge_v: Optional[Tensor] = None, dropout: float = 0.0, seed: Optional[Tensor] = None,
              score: str = "dot", negative_slope: float = 0.2, att: Optional[Tensor] = None,
              validate: bool = True) -> Tensor:
    r"""Graph attention on a CSR, on the path the dispatcher picks.

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; v: ``[N_src, H, Dv]``.
        csr: the graph (:class:`~sparse_kernels.csr.CSR`).
        bias: optional ``[E, H]`` additive score bias (user's edge order; inside the LeakyReLU for ``"gat"``).
        scale: score scale of the dot product, default :math:`1/\sqrt{D}` (``None`` for the other scores).
        normalizer: ``"softmax"``, ``"sigmoid"`` or ``"softplus"``.
        edge_k: optional ``[E, H, D]`` added to the key of each edge; edge_v: optional ``[E, H, Dv]``
            added to its value (user's edge order); neither is expanded per edge in memory.
        dropout: probability of dropping an attention weight (counter-based mask, regenerated in the
            backward; :mod:`sparse_kernels.dropout`); seed: its one-element int64 seed tensor
            (default: drawn from PyTorch's generator).
        score: ``"dot"``, ``"gat"`` (``q`` ``[N_dst, H, 1]``, ``k`` ``[N_src, H, 1]``:
            :math:`\operatorname{LeakyReLU}(q_i + k_j + b_{ij})`) or ``"gatv2"``
            (:math:`\sum_d \text{att}_{hd} \operatorname{LeakyReLU}(q_i + k_j + e^k_{ij})_d + b_{ij}`);
            see :mod:`sparse_kernels.call`.
        negative_slope: the LeakyReLU slope of the gat scores; att: GATv2's ``[H, D]`` attention vector.

    Returns:
        ``[N_dst, H, Dv]`` in the dtype of ``q``; rows without edges are zero.
    """
    call = _make_call(q, k, v, csr, bias, edge_k, edge_v, scale, normalizer, dropout, seed, score, negative_slope,
                      att, validate)
    return dispatch.select_path(call).run(call)


def attention_with_stats(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
                         scale: Optional[float] = None, normalizer: str = "softmax", *,
                         edge_k: Optional[Tensor] = None, edge_v: Optional[Tensor] = None, dropout: float = 0.0,
                         seed: Optional[Tensor] = None, score: str = "dot", negative_slope: float = 0.2,
                         att: Optional[Tensor] = None, validate: bool = True) -> tuple[Tensor, Tensor]:
    """Like ``attention`` on the CSR path, also returning the per-(row, head) statistic ``[N_dst, H]``
    (log-sum-exp for softmax, :math:`\\log Z` for softplus, zeros for sigmoid; ``+inf`` for empty rows)."""
    return _csr_attention(_make_call(q, k, v, csr, bias, edge_k, edge_v, scale, normalizer, dropout, seed, score,
                                     negative_slope, att, validate))


def explain(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
            scale: Optional[float] = None, normalizer: str = "softmax", **options) -> dict[str, str]:
    """``{"path": ..., "kernel": ...}``: the path (and, for the CSR path, the kernel set) that
    ``attention`` with the same arguments runs."""
    options.setdefault("seed", None)
    call = _make_call(q, k, v, csr, bias, options.get("edge_k"), options.get("edge_v"), scale, normalizer,
                      options.get("dropout", 0.0), options["seed"], options.get("score", "dot"),
                      options.get("negative_slope", 0.2), options.get("att"), True)
    return dispatch.explain(call)


def _transpose_args(csr: CSR) -> tuple[Tensor, ...]:
    csc = csr.transpose()
    return csr.rowptr, csr.col, csr.row, csc.colptr, csc.row, csc.col, csc.perm


def sddmm(a: Tensor, b: Tensor, csr: CSR) -> Tensor:
    r"""Per-edge dot products :math:`s_{ij} = \langle a_i, b_j\rangle`, ``[E, H]`` in the user's edge order.

    Args:
        a: ``[N_dst, H, D]`` (destination side); b: ``[N_src, H, D]`` (source side).
    """
    _check_features("a", a)
    _check_features("b", b)
    if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
        raise ValueError(f"a and b must agree in heads, channels and dtype, got {list(a.shape)} "
                         f"{a.dtype} and {list(b.shape)} {b.dtype}")
    if a.size(0) != csr.num_dst_nodes or b.size(0) != csr.num_src_nodes:
        raise ValueError(f"a must have {csr.num_dst_nodes} rows and b {csr.num_src_nodes}, "
                         f"got {a.size(0)} and {b.size(0)}")
    _check_same_device(a=a, b=b, graph=csr.col)
    return csr.to_user_order(_SddmmFn.apply(a.contiguous(), b.contiguous(), _transpose_args(csr)))


def spmm(weight: Tensor, x: Tensor, csr: CSR) -> Tensor:
    r"""Weighted neighbour sum :math:`o_i = \sum_j w_{ij} x_j`, ``[N_dst, H, D]``.

    Args:
        weight: ``[E, H]`` in the user's edge order; x: ``[N_src, H, D]``.
    """
    _check_features("x", x)
    _check_edge_values("weight", weight, csr, (x.size(1),))
    if x.size(0) != csr.num_src_nodes:
        raise ValueError(f"x has {x.size(0)} rows but the graph has {csr.num_src_nodes} source nodes")
    _check_same_device(weight=weight, x=x, graph=csr.col)
    weight = csr.to_csr_order(weight.to(x.dtype)).contiguous()
    return _SpmmFn.apply(weight, x.contiguous(), _transpose_args(csr))


def edge_softmax(scores: Tensor, csr: CSR, normalizer: str = "softmax") -> Tensor:
    """Normalises edge scores ``[E, H]`` (user's edge order) over each destination's in-edges."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError("scores must be a tensor of shape [num_edges, heads]")
    _check_edge_values("scores", scores, csr, (scores.size(1),))
    _check_normalizer(normalizer)
    _check_same_device(scores=scores, graph=csr.col)
    weights = _EdgeSoftmaxFn.apply(csr.to_csr_order(scores).contiguous(), csr.rowptr, csr.row, normalizer)[0]
    return csr.to_user_order(weights)


#: The plain-PyTorch implementation of every op, with the op's signature.
REFERENCE_KERNELS: dict[str, Callable] = {
    "attention_fwd": _attention_fwd_reference, "attention_bwd": _attention_bwd_reference,
    "sddmm": _sddmm_reference, "spmm": _spmm_reference, "edge_softmax": _edge_softmax_reference,
    "edge_softmax_bwd": _edge_softmax_bwd_reference, "elementwise_dropout": drop.elementwise_dropout}

dispatch.register_kernels("reference", None, REFERENCE_KERNELS, priority=-100)
dispatch.register_path("csr", lambda call: True, lambda call: _csr_attention(call)[0], priority=-100)
