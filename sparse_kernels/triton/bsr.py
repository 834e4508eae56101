r"""Block-sparse (BSR) attention kernels in Triton: tensor-core tiles, masks only where partial.

For a graph laid out as tiles (:class:`sparse_kernels.bsr.BSR`), one program handles a
block of ``block_m`` queries and one head and walks that row block's non-empty tiles:

.. math::
    S = \text{scale}\; Q_{\text{blk}} K_{\text{tile}}^\top, \qquad
    S \leftarrow \begin{cases} S & \text{full tile} \\ S + \log M_{\text{tile}} & \text{partial tile} \end{cases}

then FlashAttention's online softmax (running max :math:`m`, running sum :math:`\ell`,
accumulator rescaled per tile). Full tiles run unmasked loads and an unmasked ``tl.dot``;
only partial tiles (the pattern's edges or the matrix border) read a per-element mask. The
forward writes the output and the natural-log log-sum-exp per (row, head) — the same
``stat`` as the CSR kernels and :mod:`sparse_kernels.reference` (``+inf`` for a row with no
edge, whose output is zero).

Backward (simpler than the forward's scheme, and correct): one pass over the same row
blocks recomputes :math:`P = e^{S - \mathrm{lse}}`, writes :math:`dQ` per program and
accumulates :math:`dK, dV` tile by tile with fp32 ``tl.atomic_add`` (non-deterministic
summation order; no transposed layout needed).

Softmax only, no edge bias: :func:`graphattn.graph_attention` uses this path only for
such calls (other normalisers and biases go to the CSR kernels). Importable without a GPU;
the kernels also run in Triton's CPU interpreter (``TRITON_INTERPRET=1``) for tests.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..bsr import BSR

__all__ = ["bsr_attention", "bsr_attention_with_stats", "bsr_attention_forward", "bsr_attention_backward"]

_LOG2E = 1.4426950408889634


@triton.jit
def _bsr_fwd_kernel(Q, K, V, O, LSE, ROWPTR, BCOL, MIDX, MASKS, N_Q, N_K, H, qk_scale,
                    D: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = tl.program_id(0)
    h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < N_Q
    q = tl.load(Q + (offs_m[:, None] * H + h) * D + offs_d[None, :],
                mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    start = tl.load(ROWPTR + pid_m)
    end = tl.load(ROWPTR + pid_m + 1)
    mask_offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + offs_n0[None, :]
    for t in range(start, end):
        kb = tl.load(BCOL + t)
        mi = tl.load(MIDX + t)
        offs_n = kb * BLOCK_N + offs_n0
        if mi < 0:  # full tile: no bounds, no mask
            k = tl.load(K + (offs_n[:, None] * H + h) * D + offs_d[None, :],
                        mask=offs_d[None, :] < D, other=0.0)
            v = tl.load(V + (offs_n[:, None] * H + h) * DV + offs_dv[None, :],
                        mask=offs_dv[None, :] < DV, other=0.0)
            s = tl.dot(q, tl.trans(k)) * qk_scale
        else:
            col_ok = offs_n < N_K
            k = tl.load(K + (offs_n[:, None] * H + h) * D + offs_d[None, :],
                        mask=col_ok[:, None] & (offs_d[None, :] < D), other=0.0)
            v = tl.load(V + (offs_n[:, None] * H + h) * DV + offs_dv[None, :],
                        mask=col_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
            keep = tl.load(MASKS + mi.to(tl.int64) * (BLOCK_M * BLOCK_N) + mask_offs) != 0
            s = tl.where(keep, tl.dot(q, tl.trans(k)) * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("inf"))
    tl.store(O + (offs_m[:, None] * H + h) * DV + offs_dv[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None] & (offs_dv[None, :] < DV))
    tl.store(LSE + offs_m * H + h, lse, mask=row_ok)


@triton.jit
def _bsr_bwd_kernel(Q, K, V, DO, LSE, DELTA, DQ, DK, DV_, ROWPTR, BCOL, MIDX, MASKS, N_Q, N_K, H,
                    scale, D: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = tl.program_id(0)
    h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < N_Q
    q = tl.load(Q + (offs_m[:, None] * H + h) * D + offs_d[None, :],
                mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    do = tl.load(DO + (offs_m[:, None] * H + h) * DV + offs_dv[None, :],
                 mask=row_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
    lse = tl.load(LSE + offs_m * H + h, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + offs_m * H + h, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    start = tl.load(ROWPTR + pid_m)
    end = tl.load(ROWPTR + pid_m + 1)
    mask_offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + offs_n0[None, :]
    for t in range(start, end):
        kb = tl.load(BCOL + t)
        mi = tl.load(MIDX + t)
        offs_n = kb * BLOCK_N + offs_n0
        col_ok = offs_n < N_K
        k = tl.load(K + (offs_n[:, None] * H + h) * D + offs_d[None, :],
                    mask=col_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        v = tl.load(V + (offs_n[:, None] * H + h) * DV + offs_dv[None, :],
                    mask=col_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        p = tl.exp(tl.dot(q, tl.trans(k)) * scale - lse[:, None])
        if mi >= 0:
            keep = tl.load(MASKS + mi.to(tl.int64) * (BLOCK_M * BLOCK_N) + mask_offs) != 0
            p = tl.where(keep, p, 0.0)
        dv = tl.dot(tl.trans(p.to(do.dtype)), do)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)
        dk = tl.dot(tl.trans(ds.to(q.dtype)), q)
        tl.atomic_add(DV_ + (offs_n[:, None] * H + h) * DV + offs_dv[None, :], dv,
                      mask=col_ok[:, None] & (offs_dv[None, :] < DV))
        tl.atomic_add(DK + (offs_n[:, None] * H + h) * D + offs_d[None, :], dk * scale,
                      mask=col_ok[:, None] & (offs_d[None, :] < D))
    tl.store(DQ + (offs_m[:, None] * H + h) * D + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=row_ok[:, None] & (offs_d[None, :] < D))


def _check(q: Tensor, k: Tensor, v: Tensor, layout: BSR) -> None:
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("q, k, v must have shape [N, heads, channels]")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or k.dtype != q.dtype \
            or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must share a dtype among float16, bfloat16, float32, got "
                        f"{q.dtype}, {k.dtype}, {v.dtype}")
    if q.size(0) != layout.num_dst_nodes or k.size(0) != layout.num_src_nodes or v.size(0) != k.size(0):
        raise ValueError(f"q/k/v rows {q.size(0)}/{k.size(0)}/{v.size(0)} do not match the layout "
                         f"({layout.num_dst_nodes} x {layout.num_src_nodes})")
    if q.size(1) != k.size(1) or q.size(1) != v.size(1) or q.size(2) != k.size(2):
        raise ValueError("q, k, v must agree in heads, and q, k in channels")
    if layout.block_m < 16 or layout.block_n < 16:
        raise ValueError("BSR tiles must be at least 16 x 16 for tl.dot")


def _launch_cfg(layout: BSR, q: Tensor, v: Tensor) -> dict:
    return dict(D=q.size(2), DV=v.size(2), BLOCK_M=layout.block_m, BLOCK_N=layout.block_n,
                BLOCK_D=max(16, triton.next_power_of_2(q.size(2))),
                BLOCK_DV=max(16, triton.next_power_of_2(v.size(2))))


def bsr_attention_forward(q: Tensor, k: Tensor, v: Tensor, layout: BSR,
                          scale: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """Forward: ``(out [N_q, H, Dv] in q's dtype, lse [N_q, H] float32)``."""
    _check(q, k, v, layout)
    scale = 1.0 / math.sqrt(q.size(2)) if scale is None else float(scale)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    n_q, heads = q.size(0), q.size(1)
    out = torch.empty(n_q, heads, v.size(2), dtype=q.dtype, device=q.device)
    lse = torch.empty(n_q, heads, dtype=torch.float32, device=q.device)
    grid = (layout.block_rowptr.numel() - 1, heads)
    if n_q and heads:
        _bsr_fwd_kernel[grid](q, k, v, out, lse, layout.block_rowptr, layout.block_col, layout.mask_index,
                              layout.masks, n_q, k.size(0), heads, scale * _LOG2E,
                              **_launch_cfg(layout, q, v))
    return out, lse


def bsr_attention_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                           layout: BSR, scale: Optional[float] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Backward: ``(dq, dk, dv)`` in the inputs' dtypes (``dk``, ``dv`` accumulated in fp32)."""
    scale = 1.0 / math.sqrt(q.size(2)) if scale is None else float(scale)
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).contiguous()
    dq = torch.empty_like(q)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    grid = (layout.block_rowptr.numel() - 1, q.size(1))
    if q.size(0) and q.size(1):
        _bsr_bwd_kernel[grid](q, k, v, grad_out, lse, delta, dq, dk, dv, layout.block_rowptr,
                              layout.block_col, layout.mask_index, layout.masks, q.size(0), k.size(0),
                              q.size(1), scale, **_launch_cfg(layout, q, v))
    return dq, dk.to(k.dtype), dv.to(v.dtype)


class _BSRAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, layout, scale):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out, lse = bsr_attention_forward(q, k, v, layout, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.layout, ctx.scale = layout, scale
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = bsr_attention_backward(grad_out, q, k, v, out, lse, ctx.layout, ctx.scale)
        return dq, dk, dv, None, None


def bsr_attention_with_stats(q: Tensor, k: Tensor, v: Tensor, layout: BSR,
                             scale: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """Differentiable softmax attention on a BSR layout; returns ``(out, lse)``."""
    _check(q, k, v, layout)
    return _BSRAttention.apply(q, k, v, layout, scale)


def bsr_attention(q: Tensor, k: Tensor, v: Tensor, layout: BSR, scale: Optional[float] = None) -> Tensor:
    r"""Softmax attention on the tiles of ``layout``, ``[N_q, H, Dv]``.

    Args:
        q: ``[N_q, H, D]``; k: ``[N_k, H, D]``; v: ``[N_k, H, Dv]`` (fp16, bf16 or fp32).
        layout: the graph's :class:`~sparse_kernels.bsr.BSR` (e.g. from :func:`~sparse_kernels.bsr.select_bsr`).
        scale: score scale, default :math:`1/\sqrt{D}`.
    """
    return bsr_attention_with_stats(q, k, v, layout, scale)[0]
