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

Backward without atomics (as FlashAttention-2's, deterministic): a row pass over the row
blocks recomputes :math:`P = e^{S - \mathrm{lse}}` and writes :math:`dQ`; a column pass over
the transposed tiles (grouped by key block) writes :math:`dK, dV`, with
:math:`dS = P \circ (dO\,V^\top - \delta)`, :math:`\delta_i = \langle dO_i, O_i\rangle`.
Within each row (column) block the full tiles are visited first in a loop with no masks and
no bounds checks, the partial tiles after.

Row and column block indices are int64 before they are scaled, so that the row offsets
``(row * H + h) * D`` of ``[N, H, D]`` tensors do not wrap when :math:`N H D \ge 2^{31}` (512k tokens
x 32 heads x 128 channels).

Tile shapes come from the layout (``64 x 64`` by default, :data:`sparse_kernels.bsr.DEFAULT_BLOCK`);
on a GPU the warps and pipeline stages are autotuned per (length, tile shape, width).

Softmax only, no edge bias: :func:`graphattn.graph_attention` uses this path only for
such calls (other normalisers and biases go to the CSR kernels). Importable without a GPU;
the kernels also run in Triton's CPU interpreter (``TRITON_INTERPRET=1``) for tests.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..bsr import BSR

__all__ = ["bsr_attention", "bsr_attention_with_stats", "bsr_attention_forward", "bsr_attention_backward"]

_LOG2E = 1.4426950408889634


@triton.jit
def _load_rows(X, offs, ok, h, H, C: tl.constexpr, offs_c, CHECK: tl.constexpr):
    """``[len(offs), BLOCK_C]`` rows ``offs`` of head ``h`` of an ``[N, H, C]`` tensor."""
    mask = offs_c[None, :] < C
    if CHECK:
        mask = mask & ok[:, None]
    return tl.load(X + (offs[:, None] * H + h) * C + offs_c[None, :], mask=mask, other=0.0)


@triton.jit
def _fwd_tile(q, K, V, MASKS, kb, mi, m_i, l_i, acc, N_K, H, h, qk_scale, D: tl.constexpr, DV: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
              PARTIAL: tl.constexpr):
    """One tile of the online softmax: full tiles unmasked, partial tiles with their mask."""
    offs_n = kb.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = offs_n < N_K
    k = _load_rows(K, offs_n, col_ok, h, H, D, tl.arange(0, BLOCK_D), PARTIAL)
    v = _load_rows(V, offs_n, col_ok, h, H, DV, tl.arange(0, BLOCK_DV), PARTIAL)
    s = tl.dot(q, tl.trans(k)) * qk_scale
    if PARTIAL:
        mask_offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        keep = tl.load(MASKS + mi.to(tl.int64) * (BLOCK_M * BLOCK_N) + mask_offs) != 0
        s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - m_use[:, None])
    alpha = tl.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _bsr_fwd_kernel(Q, K, V, O, LSE, ROWPTR, SPLIT, BCOL, MIDX, MASKS, N_Q, N_K, H, qk_scale,
                    D: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    pid_m = (tl.num_programs(0) - 1 - tl.program_id(0)).to(tl.int64)   # longest rows (causal: last) first
    h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < N_Q
    q = _load_rows(Q, offs_m, row_ok, h, H, D, tl.arange(0, BLOCK_D), True)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    start = tl.load(ROWPTR + pid_m)
    split = tl.load(SPLIT + pid_m)
    end = tl.load(ROWPTR + pid_m + 1)
    for t in range(start, split):          # full tiles: no bounds, no mask
        m_i, l_i, acc = _fwd_tile(q, K, V, MASKS, tl.load(BCOL + t), -1, m_i, l_i, acc, N_K, H, h, qk_scale,
                                  D, DV, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, False)
    for t in range(split, end):            # partial tiles
        m_i, l_i, acc = _fwd_tile(q, K, V, MASKS, tl.load(BCOL + t), tl.load(MIDX + t), m_i, l_i, acc, N_K, H,
                                  h, qk_scale, D, DV, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, True)
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, (m_i + tl.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("inf"))
    tl.store(O + (offs_m[:, None] * H + h) * DV + offs_dv[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None] & (offs_dv[None, :] < DV))
    tl.store(LSE + offs_m * H + h, lse, mask=row_ok)


@triton.jit
def _probs(q, k, lse, scale, MASKS, mi, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PARTIAL: tl.constexpr):
    """``P = exp(scale * q k^T - lse)`` of a tile ``[BLOCK_M, BLOCK_N]`` (zero off the mask)."""
    p = tl.exp(tl.dot(q, tl.trans(k)) * scale - lse[:, None])
    if PARTIAL:
        mask_offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        keep = tl.load(MASKS + mi.to(tl.int64) * (BLOCK_M * BLOCK_N) + mask_offs) != 0
        p = tl.where(keep, p, 0.0)
    return p


@triton.jit
def _dq_tile(q, do, lse, delta, dq, K, V, MASKS, kb, mi, N_K, H, h, scale, D: tl.constexpr, DV: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
             PARTIAL: tl.constexpr):
    offs_n = kb.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = offs_n < N_K
    k = _load_rows(K, offs_n, col_ok, h, H, D, tl.arange(0, BLOCK_D), PARTIAL)
    v = _load_rows(V, offs_n, col_ok, h, H, DV, tl.arange(0, BLOCK_DV), PARTIAL)
    p = _probs(q, k, lse, scale, MASKS, mi, BLOCK_M, BLOCK_N, PARTIAL)
    ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k)


@triton.jit
def _bsr_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, ROWPTR, SPLIT, BCOL, MIDX, MASKS, N_Q, N_K, H, scale,
                       D: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    """Row pass: ``dq_i = scale * sum_j ds_ij k_j`` with ``ds = P * (do v^T - delta)``."""
    pid_m = (tl.num_programs(0) - 1 - tl.program_id(0)).to(tl.int64)   # longest rows (causal: last) first
    h = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N_Q
    q = _load_rows(Q, offs_m, row_ok, h, H, D, offs_d, True)
    do = _load_rows(DO, offs_m, row_ok, h, H, DV, tl.arange(0, BLOCK_DV), True)
    lse = tl.load(LSE + offs_m * H + h, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + offs_m * H + h, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    start = tl.load(ROWPTR + pid_m)
    split = tl.load(SPLIT + pid_m)
    end = tl.load(ROWPTR + pid_m + 1)
    for t in range(start, split):
        dq = _dq_tile(q, do, lse, delta, dq, K, V, MASKS, tl.load(BCOL + t), -1, N_K, H, h, scale, D, DV,
                      BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, False)
    for t in range(split, end):
        dq = _dq_tile(q, do, lse, delta, dq, K, V, MASKS, tl.load(BCOL + t), tl.load(MIDX + t), N_K, H, h, scale,
                      D, DV, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, True)
    tl.store(DQ + (offs_m[:, None] * H + h) * D + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=row_ok[:, None] & (offs_d[None, :] < D))


@triton.jit
def _dkdv_tile(k, v, dk, dv, Q, DO, LSE, DELTA, MASKS, rb, mi, N_Q, H, h, scale, D: tl.constexpr,
               DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
               BLOCK_DV: tl.constexpr, PARTIAL: tl.constexpr):
    offs_m = rb.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < N_Q
    q = _load_rows(Q, offs_m, row_ok, h, H, D, tl.arange(0, BLOCK_D), PARTIAL)
    do = _load_rows(DO, offs_m, row_ok, h, H, DV, tl.arange(0, BLOCK_DV), PARTIAL)
    if PARTIAL:
        lse = tl.load(LSE + offs_m * H + h, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + offs_m * H + h, mask=row_ok, other=0.0)
    else:
        lse = tl.load(LSE + offs_m * H + h)
        delta = tl.load(DELTA + offs_m * H + h)
    p = _probs(q, k, lse, scale, MASKS, mi, BLOCK_M, BLOCK_N, PARTIAL)      # [BLOCK_M, BLOCK_N]
    dv += tl.dot(tl.trans(p.to(do.dtype)), do)
    ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
    dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
    return dk, dv


@triton.jit
def _bsr_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV_, COLPTR, SPLIT_T, TROW, MIDX_T, MASKS, N_Q, N_K, H,
                         scale, D: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    """Column pass over the transposed tiles: ``dv_j = sum_i P_ij do_i``, ``dk_j = scale sum_i ds_ij q_i``."""
    pid_n = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    col_ok = offs_n < N_K
    k = _load_rows(K, offs_n, col_ok, h, H, D, offs_d, True)
    v = _load_rows(V, offs_n, col_ok, h, H, DV, offs_dv, True)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    start = tl.load(COLPTR + pid_n)
    split = tl.load(SPLIT_T + pid_n)
    end = tl.load(COLPTR + pid_n + 1)
    for t in range(start, split):
        dk, dv = _dkdv_tile(k, v, dk, dv, Q, DO, LSE, DELTA, MASKS, tl.load(TROW + t), -1, N_Q, H, h, scale, D,
                            DV, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, False)
    for t in range(split, end):
        dk, dv = _dkdv_tile(k, v, dk, dv, Q, DO, LSE, DELTA, MASKS, tl.load(TROW + t), tl.load(MIDX_T + t), N_Q,
                            H, h, scale, D, DV, BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, True)
    tl.store(DK + (offs_n[:, None] * H + h) * D + offs_d[None, :], (dk * scale).to(DK.dtype.element_ty),
             mask=col_ok[:, None] & (offs_d[None, :] < D))
    tl.store(DV_ + (offs_n[:, None] * H + h) * DV + offs_dv[None, :], dv.to(DV_.dtype.element_ty),
             mask=col_ok[:, None] & (offs_dv[None, :] < DV))


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


def _tuned(kernel):
    """On a GPU, ``kernel`` autotuned over warps and pipeline stages per (length, tiles, width);
    in Triton's interpreter (one config only) the kernel itself."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return kernel
    configs = [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (2, 3)]
    return triton.autotune(configs, key=["N_Q", "N_K", "BLOCK_M", "BLOCK_N", "D", "DV"])(kernel)


_FWD, _BWD_DQ, _BWD_DKDV = (_tuned(k) for k in (_bsr_fwd_kernel, _bsr_bwd_dq_kernel, _bsr_bwd_dkdv_kernel))


def _launch_cfg(layout: BSR, q: Tensor, v: Tensor) -> dict:
    cfg = dict(D=q.size(2), DV=v.size(2), BLOCK_M=layout.block_m, BLOCK_N=layout.block_n,
               BLOCK_D=max(16, triton.next_power_of_2(q.size(2))),
               BLOCK_DV=max(16, triton.next_power_of_2(v.size(2))))
    if _FWD is _bsr_fwd_kernel:          # not autotuned: pick the warps here
        cfg["num_warps"] = 4 if layout.block_m * layout.block_n <= 64 * 64 else 8
    return cfg


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
        _FWD[grid](q, k, v, out, lse, layout.block_rowptr, layout.block_split, layout.block_col,
                   layout.mask_index, layout.masks, n_q, k.size(0), heads, scale * _LOG2E,
                   **_launch_cfg(layout, q, v))
    return out, lse


def bsr_attention_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                           layout: BSR, scale: Optional[float] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Backward: ``(dq, dk, dv)`` in the inputs' dtypes (row pass for ``dq``, column pass for ``dk, dv``)."""
    scale = 1.0 / math.sqrt(q.size(2)) if scale is None else float(scale)
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    heads, cfg = q.size(1), _launch_cfg(layout, q, v)
    if q.size(0) and heads:
        _BWD_DQ[(layout.block_rowptr.numel() - 1, heads)](
            q, k, v, grad_out, lse, delta, dq, layout.block_rowptr, layout.block_split, layout.block_col,
            layout.mask_index, layout.masks, q.size(0), k.size(0), heads, scale, **cfg)
    if k.size(0) and heads:
        _BWD_DKDV[(layout.block_colptr.numel() - 1, heads)](
            q, k, v, grad_out, lse, delta, dk, dv, layout.block_colptr, layout.block_split_t, layout.tile_row_t,
            layout.mask_index_t, layout.masks, q.size(0), k.size(0), heads, scale, **cfg)
    return dq, dk, dv


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
