r"""``torch.library`` custom ops of the engine, with fake kernels and autograd.

Four public ops, each on edges in CSR order (see :mod:`sparse_kernels.csr`):

* :func:`attention` — fused :math:`o_i = \sum_j \operatorname{normalise}_j(\text{scale}\,\langle q_i,k_j\rangle + b_{ij})\, v_j`;
* :func:`sddmm` — per-edge dot products :math:`s_e = \langle a_{\text{dst}(e)}, b_{\text{src}(e)}\rangle`;
* :func:`edge_softmax` — per-destination normalisation of edge scores;
* :func:`spmm` — :math:`o_i = \sum_{j} w_{ij} x_j`.

Each is registered as ``torch.ops.sparse_kernels.*`` with a fake (meta) kernel, so
``torch.compile(fullgraph=True)`` traces through it and shapes stay symbolic (a new graph
size does not force a recompile). The default implementation is the plain-PyTorch
reference (:mod:`sparse_kernels.reference`, also in :data:`REFERENCE_KERNELS`); device backends
(the Triton kernels) register themselves per device type with :func:`register_backend`, and
:func:`backend_override` swaps a device's kernels for a ``with`` block (tests run the Triton
kernels on CPU tensors in Triton's interpreter this way).

Index tensors of an edge list travel as ``(ptr, gather, segment)``: the offsets, the node
read by each edge and the node each edge reduces into; for the CSR that is
``(rowptr, col, row)`` and for its transpose ``(colptr, csc.row, csc.col)``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor

from . import reference
from .csr import CSR

__all__ = ["attention", "attention_with_stats", "sddmm", "edge_softmax", "spmm", "register_backend",
           "backend_override", "validate_attention_inputs", "REFERENCE_KERNELS"]

_LIB = "sparse_kernels"


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- attention
def _attention_fwd_reference(q: Tensor, k: Tensor, v: Tensor, rowptr: Tensor, col: Tensor, row: Tensor,
                             colptr: Tensor, row_t: Tensor, perm_t: Tensor, bias: Optional[Tensor],
                             scale: float, normalizer: str) -> tuple[Tensor, Tensor]:
    out, stat = reference.attention_forward(q, k, v, row, col, bias, scale, normalizer, rowptr)
    return out, stat.to(_stat_dtype(q.dtype))


_attention_fwd = torch.library.custom_op(f"{_LIB}::attention_fwd", mutates_args=())(_attention_fwd_reference)


@_attention_fwd.register_fake
def _(q, k, v, rowptr, col, row, colptr, row_t, perm_t, bias, scale, normalizer):
    return (q.new_empty(q.shape[0], q.shape[1], v.shape[2]),
            q.new_empty(q.shape[0], q.shape[1], dtype=_stat_dtype(q.dtype)))


def _attention_bwd_reference(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, stat: Tensor,
                             rowptr: Tensor, col: Tensor, row: Tensor, colptr: Tensor, row_t: Tensor,
                             perm_t: Tensor, bias: Optional[Tensor], scale: float,
                             normalizer: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dq, dk, dv, dbias = reference.attention_backward(grad_out, q, k, v, out, stat, row, col, bias,
                                                     scale, normalizer, rowptr, (colptr, row_t, perm_t))
    return dq, dk, dv, (dbias if dbias is not None else q.new_empty(0))


_attention_bwd = torch.library.custom_op(f"{_LIB}::attention_bwd", mutates_args=())(_attention_bwd_reference)


@_attention_bwd.register_fake
def _(grad_out, q, k, v, out, stat, rowptr, col, row, colptr, row_t, perm_t, bias, scale, normalizer):
    dbias = torch.empty_like(bias) if bias is not None else q.new_empty(0)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dbias


def _attention_setup(ctx, inputs, output):
    q, k, v, rowptr, col, row, colptr, row_t, perm_t, bias, scale, normalizer = inputs
    out, stat = output
    ctx.save_for_backward(q, k, v, out, stat, rowptr, col, row, colptr, row_t, perm_t, bias)
    ctx.scale, ctx.normalizer, ctx.has_bias = scale, normalizer, bias is not None
    ctx.mark_non_differentiable(stat)


def _attention_backward(ctx, grad_out, grad_stat):
    q, k, v, out, stat, rowptr, col, row, colptr, row_t, perm_t, bias = ctx.saved_tensors
    dq, dk, dv, dbias = _attention_bwd(grad_out.contiguous(), q, k, v, out, stat, rowptr, col, row,
                                       colptr, row_t, perm_t, bias, ctx.scale, ctx.normalizer)
    return (dq, dk, dv, None, None, None, None, None, None, dbias if ctx.has_bias else None,
            None, None)


torch.library.register_autograd(f"{_LIB}::attention_fwd", _attention_backward,
                                setup_context=_attention_setup)


# --------------------------------------------------------------------------- sddmm
def _sddmm_reference(a: Tensor, b: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    return reference.sddmm(a, b, segment, gather, ptr).to(a.dtype)


_sddmm = torch.library.custom_op(f"{_LIB}::sddmm", mutates_args=())(_sddmm_reference)


@_sddmm.register_fake
def _(a, b, ptr, gather, segment):
    return a.new_empty(gather.shape[0], a.shape[1])


# --------------------------------------------------------------------------- spmm
def _spmm_reference(weight: Tensor, x: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    return reference.spmm(weight, x, segment, gather, ptr.numel() - 1, ptr).to(x.dtype)


_spmm = torch.library.custom_op(f"{_LIB}::spmm", mutates_args=())(_spmm_reference)


@_spmm.register_fake
def _(weight, x, ptr, gather, segment):
    return x.new_empty(ptr.shape[0] - 1, x.shape[1], x.shape[2])


# --------------------------------------------------------------------------- edge softmax
def _edge_softmax_reference(scores: Tensor, ptr: Tensor, segment: Tensor, normalizer: str) -> tuple[Tensor, Tensor]:
    weights, stat = reference.edge_normalize(scores, segment, ptr.numel() - 1, normalizer)
    return weights.to(scores.dtype), stat.to(_stat_dtype(scores.dtype))


_edge_softmax = torch.library.custom_op(f"{_LIB}::edge_softmax", mutates_args=())(_edge_softmax_reference)


@_edge_softmax.register_fake
def _(scores, ptr, segment, normalizer):
    return torch.empty_like(scores), scores.new_empty(ptr.shape[0] - 1, scores.shape[1],
                                                      dtype=_stat_dtype(scores.dtype))


def _edge_softmax_bwd_reference(grad_weights: Tensor, weights: Tensor, scores: Tensor, stat: Tensor,
                                ptr: Tensor, segment: Tensor, normalizer: str) -> Tensor:
    return reference.edge_normalize_backward(grad_weights, weights, scores, stat, segment,
                                             normalizer).to(scores.dtype)


_edge_softmax_bwd = torch.library.custom_op(f"{_LIB}::edge_softmax_bwd",
                                            mutates_args=())(_edge_softmax_bwd_reference)


@_edge_softmax_bwd.register_fake
def _(grad_weights, weights, scores, stat, ptr, segment, normalizer):
    return torch.empty_like(scores)


# --------------------------------------------------------------------------- autograd of the unfused ops
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


def _check_edge_values(name: str, x: Tensor, csr: CSR, heads: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [E, H], got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if tuple(x.shape) != (csr.num_edges, heads):
        raise ValueError(f"{name} must have shape [num_edges, heads] = [{csr.num_edges}, {heads}], "
                         f"got {list(x.shape)}")


def validate_attention_inputs(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor],
                              normalizer: str) -> None:
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
        _check_edge_values("bias", bias, csr, q.size(1))
    _check_same_device(q=q, k=k, v=v, graph=csr.col, bias=bias)


# --------------------------------------------------------------------------- public API
def _transpose_args(csr: CSR) -> tuple[Tensor, ...]:
    csc = csr.transpose()
    return csr.rowptr, csr.col, csr.row, csc.colptr, csc.row, csc.col, csc.perm


def attention_with_stats(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
                         scale: Optional[float] = None, normalizer: str = "softmax",
                         validate: bool = True) -> tuple[Tensor, Tensor]:
    """Like :func:`attention`, also returning the per-(row, head) statistic ``[N_dst, H]``
    (log-sum-exp for softmax, :math:`\\log Z` for softplus, zeros for sigmoid)."""
    if validate:
        validate_attention_inputs(q, k, v, csr, bias, normalizer)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    csc = csr.transpose()
    return torch.ops.sparse_kernels.attention_fwd(
        q.contiguous(), k.contiguous(), v.contiguous(), csr.rowptr, csr.col, csr.row, csc.colptr,
        csc.row, csc.perm, None if bias is None else bias.contiguous(), float(scale), normalizer)


def attention(q: Tensor, k: Tensor, v: Tensor, csr: CSR, bias: Optional[Tensor] = None,
              scale: Optional[float] = None, normalizer: str = "softmax") -> Tensor:
    r"""Fused graph attention on a CSR.

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; v: ``[N_src, H, Dv]``.
        csr: the graph (:class:`~sparse_kernels.csr.CSR`).
        bias: optional ``[E, H]`` additive score bias in **CSR order**.
        scale: score scale, default :math:`1/\sqrt{D}`.
        normalizer: ``"softmax"``, ``"sigmoid"`` or ``"softplus"``.

    Returns:
        ``[N_dst, H, Dv]`` in the dtype of ``q``.
    """
    return attention_with_stats(q, k, v, csr, bias, scale, normalizer)[0]


def sddmm(a: Tensor, b: Tensor, csr: CSR) -> Tensor:
    r"""Per-edge dot products :math:`s_{ij} = \langle a_i, b_j\rangle`, ``[E, H]`` in CSR order.

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
    return _SddmmFn.apply(a.contiguous(), b.contiguous(), _transpose_args(csr))


def spmm(weight: Tensor, x: Tensor, csr: CSR) -> Tensor:
    r"""Weighted neighbour sum :math:`o_i = \sum_j w_{ij} x_j`, ``[N_dst, H, D]``.

    Args:
        weight: ``[E, H]`` in CSR order; x: ``[N_src, H, D]``.
    """
    _check_features("x", x)
    _check_edge_values("weight", weight, csr, x.size(1))
    if x.size(0) != csr.num_src_nodes:
        raise ValueError(f"x has {x.size(0)} rows but the graph has {csr.num_src_nodes} source nodes")
    _check_same_device(weight=weight, x=x, graph=csr.col)
    return _SpmmFn.apply(weight.to(x.dtype).contiguous(), x.contiguous(), _transpose_args(csr))


def edge_softmax(scores: Tensor, csr: CSR, normalizer: str = "softmax") -> Tensor:
    """Normalises edge scores ``[E, H]`` (CSR order) over each destination's in-edges."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError("scores must be a tensor of shape [num_edges, heads]")
    _check_edge_values("scores", scores, csr, scores.size(1))
    _check_normalizer(normalizer)
    _check_same_device(scores=scores, graph=csr.col)
    return _EdgeSoftmaxFn.apply(scores.contiguous(), csr.rowptr, csr.row, normalizer)[0]


# --------------------------------------------------------------------------- backends
_OPS = {"attention_fwd": _attention_fwd, "attention_bwd": _attention_bwd, "sddmm": _sddmm,
        "spmm": _spmm, "edge_softmax": _edge_softmax, "edge_softmax_bwd": _edge_softmax_bwd}

#: The plain-PyTorch implementation of every op, with the op's signature; device backends fall
#: back to these for inputs they do not handle (e.g. float64).
REFERENCE_KERNELS: dict[str, Callable] = {
    "attention_fwd": _attention_fwd_reference, "attention_bwd": _attention_bwd_reference,
    "sddmm": _sddmm_reference, "spmm": _spmm_reference, "edge_softmax": _edge_softmax_reference,
    "edge_softmax_bwd": _edge_softmax_bwd_reference}

_REGISTERED: dict[str, dict[str, Callable]] = {}


def register_backend(device_type: str, **kernels: Callable) -> None:
    """Registers device-specific implementations, e.g. ``register_backend("cuda", sddmm=fn)``.

    Each ``fn`` has the signature of the op it replaces (see :data:`REFERENCE_KERNELS`).
    """
    for name in kernels:
        if name not in _OPS:
            raise ValueError(f"unknown op {name!r}; known: {sorted(_OPS)}")
    for name, fn in kernels.items():
        _OPS[name].register_kernel(device_type)(fn)
        _REGISTERED.setdefault(device_type, {})[name] = fn


@contextlib.contextmanager
def backend_override(device_type: str, **kernels: Callable) -> Iterator[None]:
    """Runs ``kernels`` for ``device_type`` inside the ``with`` block, then restores what was there.

    Used to run the Triton kernels on CPU tensors in Triton's interpreter
    (``TRITON_INTERPRET=1``), through the same op dispatch that CUDA tensors take.
    """
    previous = {name: _REGISTERED.get(device_type, {}).get(name, REFERENCE_KERNELS[name])
                for name in kernels}
    register_backend(device_type, **kernels)
    try:
        yield
    finally:
        register_backend(device_type, **previous)
