r"""The engine's public ops, their ``torch.library`` custom ops, fake kernels and autograd.

Public functions (per-edge tensors always in the **user's edge order**, the order of the
``edge_index`` the :class:`~sparse_kernels.csr.CSR` was built from; the CSR order is internal):

* :func:`attention` — :math:`o_i = \sum_j w_{ij} (v_j + e^v_{ij})`,
  :math:`w = \operatorname{dropout}(\operatorname{normalise}_j(\text{scale}\,\langle q_i, k_j + e^k_{ij}\rangle
  + b_{ij}))`, run on the path the dispatcher picks (:mod:`sparse_kernels.dispatch`);
* :func:`attention_with_stats` — the CSR path, also returning the per-row statistic;
* :func:`sddmm` — per-edge dot products :math:`s_{ij} = \langle a_i, b_j\rangle`;
* :func:`edge_softmax` — per-destination normalisation of edge scores;
* :func:`spmm` — :math:`o_i = \sum_{j} w_{ij} x_j`.

The CSR path runs the custom ops ``torch.ops.sparse_kernels.*`` under ``torch.compile`` (fake
kernels, so ``torch.compile(fullgraph=True)`` traces through them with symbolic sizes) and, in
eager mode, the same kernels through a lean :class:`torch.autograd.Function` (the custom-op
machinery costs about half a millisecond per call in Python, more than the kernels themselves on a
batch of molecules). Each implementation asks the dispatcher for the kernel of its device, dtype and
features: the
plain-PyTorch reference (:mod:`sparse_kernels.reference`, registered here as ``"reference"`` for
every device), the compiled CPU kernels, the Triton kernels. Kernel implementations have the ops'
signatures, except that ``attention_bwd`` takes one more argument, ``fold_edge_grads``: ``edge_v`` is the
same tensor as ``edge_k``, so return the sum of both gradients as ``dedge_k`` and an empty ``dedge_v``
(the eager path uses it for TransformerConv's shared edge projection; the custom op passes ``False``).
Index tensors of an edge list travel
as ``(ptr, gather, segment)``: offsets, the node read by each edge and the node it reduces into;
``(rowptr, col, row)`` for the CSR and ``(colptr, csc.row, csc.col)`` for its transpose.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from . import dispatch, dropout as drop, reference
from .csr import CSR
from .dispatch import AttentionCall, Features

__all__ = ["attention", "attention_with_stats", "sddmm", "edge_softmax", "spmm", "validate_attention_inputs",
           "REFERENCE_KERNELS"]

_LIB = "sparse_kernels"


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _empty_if_none(x: Optional[Tensor], like: Tensor) -> Tensor:
    return like.new_empty(0) if x is None else x


# --------------------------------------------------------------------------- attention
def _attention_features(q: Tensor, bias, edge_k, edge_v, seed, normalizer: str) -> Features:
    return Features(q.dtype, normalizer, edge_k is not None or edge_v is not None, seed is not None, bias is not None)


def _attention_fwd_reference(q: Tensor, k: Tensor, v: Tensor, rowptr: Tensor, col: Tensor, row: Tensor,
                             eid: Optional[Tensor], colptr: Tensor, row_t: Tensor, perm_t: Tensor,
                             bias: Optional[Tensor], edge_k: Optional[Tensor], edge_v: Optional[Tensor],
                             seed: Optional[Tensor], scale: float, normalizer: str, p_threshold: int,
                             keep_scale: float) -> tuple[Tensor, Tensor]:
    out, stat = reference.attention_forward(q, k, v, row, col, bias, scale, normalizer, rowptr, eid=eid,
                                            edge_k=edge_k, edge_v=edge_v, seed=seed, p_threshold=p_threshold,
                                            keep_scale=keep_scale)
    return out, stat.to(_stat_dtype(q.dtype))


@torch.library.custom_op(f"{_LIB}::attention_fwd", mutates_args=())
def _attention_fwd(q: Tensor, k: Tensor, v: Tensor, rowptr: Tensor, col: Tensor, row: Tensor,
                   eid: Optional[Tensor], colptr: Tensor, row_t: Tensor, perm_t: Tensor, bias: Optional[Tensor],
                   edge_k: Optional[Tensor], edge_v: Optional[Tensor], seed: Optional[Tensor], scale: float,
                   normalizer: str, p_threshold: int, keep_scale: float) -> tuple[Tensor, Tensor]:
    fn = dispatch.kernel("attention_fwd", q.device.type, _attention_features(q, bias, edge_k, edge_v, seed, normalizer))
    return fn(q, k, v, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed, scale, normalizer,
              p_threshold, keep_scale)


@_attention_fwd.register_fake
def _(q, k, v, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed, scale, normalizer,
      p_threshold, keep_scale):
    return (q.new_empty(q.shape[0], q.shape[1], v.shape[2]),
            q.new_empty(q.shape[0], q.shape[1], dtype=_stat_dtype(q.dtype)))


def _attention_bwd_reference(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, stat: Tensor,
                             rowptr: Tensor, col: Tensor, row: Tensor, eid: Optional[Tensor], colptr: Tensor,
                             row_t: Tensor, perm_t: Tensor, bias: Optional[Tensor], edge_k: Optional[Tensor],
                             edge_v: Optional[Tensor], seed: Optional[Tensor], scale: float, normalizer: str,
                             p_threshold: int, keep_scale: float, fold_edge_grads: bool) -> tuple[Tensor, ...]:
    dq, dk, dv, dbias, dek, dev = reference.attention_backward(
        grad_out, q, k, v, out, stat, row, col, bias, scale, normalizer, rowptr, (colptr, row_t, perm_t), eid=eid,
        edge_k=edge_k, edge_v=edge_v, seed=seed, p_threshold=p_threshold, keep_scale=keep_scale)
    if fold_edge_grads:
        dek, dev = dek + dev, None
    return tuple(_empty_if_none(g, q) for g in (dq, dk, dv, dbias, dek, dev))


@torch.library.custom_op(f"{_LIB}::attention_bwd", mutates_args=())
def _attention_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, stat: Tensor, rowptr: Tensor,
                   col: Tensor, row: Tensor, eid: Optional[Tensor], colptr: Tensor, row_t: Tensor, perm_t: Tensor,
                   bias: Optional[Tensor], edge_k: Optional[Tensor], edge_v: Optional[Tensor],
                   seed: Optional[Tensor], scale: float, normalizer: str, p_threshold: int,
                   keep_scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    fn = dispatch.kernel("attention_bwd", q.device.type, _attention_features(q, bias, edge_k, edge_v, seed, normalizer))
    return fn(grad_out, q, k, v, out, stat, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed,
              scale, normalizer, p_threshold, keep_scale, False)


@_attention_bwd.register_fake
def _(grad_out, q, k, v, out, stat, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed,
      scale, normalizer, p_threshold, keep_scale):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            *(q.new_empty(0) if x is None else torch.empty_like(x) for x in (bias, edge_k, edge_v)))


def _attention_setup(ctx, inputs, output):
    (q, k, v, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed, scale, normalizer,
     p_threshold, keep_scale) = inputs
    out, stat = output
    ctx.save_for_backward(q, k, v, out, stat, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed)
    ctx.options = (scale, normalizer, p_threshold, keep_scale)
    ctx.mark_non_differentiable(stat)


def _attention_backward(ctx, grad_out, grad_stat):
    q, k, v, out, stat, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed = ctx.saved_tensors
    dq, dk, dv, dbias, dek, dev = _attention_bwd(grad_out.contiguous(), q, k, v, out, stat, rowptr, col, row, eid,
                                                 colptr, row_t, perm_t, bias, edge_k, edge_v, seed, *ctx.options)
    optional = [None if x is None else g for x, g in ((bias, dbias), (edge_k, dek), (edge_v, dev))]
    return (dq, dk, dv, None, None, None, None, None, None, None, *optional, None, None, None, None, None)


torch.library.register_autograd(f"{_LIB}::attention_fwd", _attention_backward, setup_context=_attention_setup)


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
                              edge_v: Optional[Tensor] = None) -> None:
    """Raises ``TypeError``/``ValueError`` naming the argument for any inconsistent input."""
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
    _check_same_device(q=q, k=k, v=v, graph=csr.col, bias=bias, edge_k=edge_k, edge_v=edge_v)


# --------------------------------------------------------------------------- public API
def _contiguous(x: Optional[Tensor]) -> Optional[Tensor]:
    return None if x is None else x.contiguous()


class _EagerAttention(torch.autograd.Function):
    """The fused ops' kernels with their autograd, without the custom-op dispatch (eager mode). One
    tensor given as both ``edge_k`` and ``edge_v`` (TransformerConv's edge projection) is passed once,
    as ``edge_k`` with ``shared_edge=True``, and gets one gradient, written once by the kernel."""

    @staticmethod
    def forward(ctx, q, k, v, bias, edge_k, edge_v, graph, options, shared_edge):
        edge_v = edge_k if shared_edge else edge_v
        features = _attention_features(q, bias, edge_k, edge_v, options[0], options[2])
        out, stat = dispatch.kernel("attention_fwd", q.device.type, features)(
            q, k, v, *graph, bias, edge_k, edge_v, *options)
        ctx.save_for_backward(q, k, v, bias, edge_k, edge_v, out, stat)
        ctx.graph, ctx.options, ctx.features, ctx.shared_edge = graph, options, features, shared_edge
        ctx.mark_non_differentiable(stat)
        return out, stat

    @staticmethod
    def backward(ctx, grad_out, grad_stat):
        q, k, v, bias, edge_k, edge_v, out, stat = ctx.saved_tensors
        dq, dk, dv, dbias, dek, dev = dispatch.kernel("attention_bwd", q.device.type, ctx.features)(
            grad_out.contiguous(), q, k, v, out, stat, *ctx.graph, bias, edge_k, edge_v, *ctx.options,
            ctx.shared_edge)
        optional = [None if x is None else g for x, g in ((bias, dbias), (edge_k, dek), (edge_v, dev))]
        if ctx.shared_edge:
            optional[2] = None
        return (dq, dk, dv, *optional, None, None, None)


def _csr_attention(call: AttentionCall) -> tuple[Tensor, Tensor]:
    """The CSR path: the fused kernels (chosen per device, dtype and features)."""
    csr, csc = call.csr, call.csr.transpose()
    p_threshold = drop.threshold(call.dropout) if call.seed is not None else 0
    tensors = (call.q.contiguous(), call.k.contiguous(), call.v.contiguous(), _contiguous(call.bias),
               _contiguous(call.edge_k), _contiguous(call.edge_v))
    graph = (csr.rowptr, csr.col, csr.row, csr.eid, csc.colptr, csc.row, csc.perm)
    options = (call.seed if p_threshold else None, float(call.scale), call.normalizer, p_threshold,
               drop.keep_scale(call.dropout))
    if torch.compiler.is_compiling():
        q, k, v, bias, edge_k, edge_v = tensors
        return torch.ops.sparse_kernels.attention_fwd(q, k, v, *graph, bias, edge_k, edge_v, *options)
    shared_edge = call.edge_k is not None and call.edge_k is call.edge_v
    if shared_edge:
        tensors = tensors[:5] + (None,)
    return _EagerAttention.apply(*tensors, graph, options, shared_edge)


def _make_call(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor], edge_k: Optional[Tensor],
               edge_v: Optional[Tensor], scale: Optional[float], normalizer: str, dropout: float,
               seed: Optional[Tensor], validate: bool) -> AttentionCall:
    if validate:
        validate_attention_inputs(q, k, v, csr, bias, normalizer, edge_k, edge_v)
        drop.threshold(dropout)
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    if dropout > 0.0 and seed is None:
        seed = drop.new_seed(q.device)
    return AttentionCall(q, k, v, csr, bias, edge_k, edge_v, float(scale), normalizer, float(dropout),
                         seed if dropout > 0.0 else None)


def attention(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
              scale: Optional[float] = None, normalizer: str = "softmax", *, edge_k: Optional[Tensor] = None,
              edge_v: Optional[Tensor] = None, dropout: float = 0.0, seed: Optional[Tensor] = None,
              validate: bool = True) -> Tensor:
    r"""Graph attention on a CSR, on the path the dispatcher picks.

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; v: ``[N_src, H, Dv]``.
        csr: the graph (:class:`~sparse_kernels.csr.CSR`).
        bias: optional ``[E, H]`` additive score bias (user's edge order).
        scale: score scale, default :math:`1/\sqrt{D}`.
        normalizer: ``"softmax"``, ``"sigmoid"`` or ``"softplus"``.
        edge_k: optional ``[E, H, D]`` added to the key of each edge; edge_v: optional ``[E, H, Dv]``
            added to its value (user's edge order); neither is expanded per edge in memory.
        dropout: probability of dropping an attention weight (counter-based mask, regenerated in the
            backward; :mod:`sparse_kernels.dropout`); seed: its one-element int64 seed tensor
            (default: drawn from PyTorch's generator).

    Returns:
        ``[N_dst, H, Dv]`` in the dtype of ``q``; rows without edges are zero.
    """
    call = _make_call(q, k, v, csr, bias, edge_k, edge_v, scale, normalizer, dropout, seed, validate)
    return dispatch.select_path(call).run(call)


def attention_with_stats(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
                         scale: Optional[float] = None, normalizer: str = "softmax", *,
                         edge_k: Optional[Tensor] = None, edge_v: Optional[Tensor] = None, dropout: float = 0.0,
                         seed: Optional[Tensor] = None, validate: bool = True) -> tuple[Tensor, Tensor]:
    """Like :func:`attention` on the CSR path, also returning the per-(row, head) statistic ``[N_dst, H]``
    (log-sum-exp for softmax, :math:`\\log Z` for softplus, zeros for sigmoid; ``+inf`` for empty rows)."""
    return _csr_attention(_make_call(q, k, v, csr, bias, edge_k, edge_v, scale, normalizer, dropout, seed,
                                     validate))


def _transpose_args(csr: CSR) -> tuple[Tensor, ...]:
    csc = csr.transpose()
    return csr.rowptr, csr.col, csr.row, csc.colptr, csc.row, csc.col, csc.perm


def _to_csr_order(x: Tensor, csr: CSR) -> Tensor:
    return x if csr.eid is None else x.index_select(0, csr.eid)


def _to_user_order(x: Tensor, csr: CSR) -> Tensor:
    return x if csr.eid is None else torch.empty_like(x).index_copy(0, csr.eid, x)


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
    return _to_user_order(_SddmmFn.apply(a.contiguous(), b.contiguous(), _transpose_args(csr)), csr)


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
    weight = _to_csr_order(weight.to(x.dtype), csr).contiguous()
    return _SpmmFn.apply(weight, x.contiguous(), _transpose_args(csr))


def edge_softmax(scores: Tensor, csr: CSR, normalizer: str = "softmax") -> Tensor:
    """Normalises edge scores ``[E, H]`` (user's edge order) over each destination's in-edges."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError("scores must be a tensor of shape [num_edges, heads]")
    _check_edge_values("scores", scores, csr, (scores.size(1),))
    _check_normalizer(normalizer)
    _check_same_device(scores=scores, graph=csr.col)
    weights = _EdgeSoftmaxFn.apply(_to_csr_order(scores, csr).contiguous(), csr.rowptr, csr.row, normalizer)[0]
    return _to_user_order(weights, csr)


#: The plain-PyTorch implementation of every op, with the op's signature.
REFERENCE_KERNELS: dict[str, Callable] = {
    "attention_fwd": _attention_fwd_reference, "attention_bwd": _attention_bwd_reference,
    "sddmm": _sddmm_reference, "spmm": _spmm_reference, "edge_softmax": _edge_softmax_reference,
    "edge_softmax_bwd": _edge_softmax_bwd_reference}

dispatch.register_kernels("reference", None, REFERENCE_KERNELS, priority=-100)
dispatch.register_path("csr", lambda call: True, lambda call: _csr_attention(call)[0], priority=-100)
