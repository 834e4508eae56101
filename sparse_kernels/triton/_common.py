r"""Pieces shared by the Triton kernels: normaliser math, tile gathers and the split-K combine.

Every row-parallel kernel runs one program per *work item* of a
:class:`~sparse_kernels.triton.schedule.Plan` (a node and a contiguous range of its edges) and
per block of ``BLOCK_H`` heads. An item that covers its node's whole edge list writes the final
result; an item of a split node writes a partial result into slot ``slot`` of a scratch buffer,
and :func:`combine` merges the slots of each split node in a fixed order (no atomics, so the
result is bitwise reproducible).

Partial softmax states are merged as in flash-decoding:

.. math::
    M = \max_c m_c,\qquad L = \sum_c l_c e^{m_c - M},\qquad A = \sum_c a_c e^{m_c - M};

the other normalisers (and plain sums) add ``l`` and ``a``.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

#: Normaliser codes passed as the kernels' ``NORM``; ``SUM`` is a plain per-node sum. The kernels
#: compare with the ``NORM_*`` twins (Triton reads globals only as ``constexpr``).
SOFTMAX, SIGMOID, SOFTPLUS, SUM = 0, 1, 2, 3
NORM_SOFTMAX, NORM_SIGMOID, NORM_SOFTPLUS, NORM_SUM = (tl.constexpr(c) for c in (SOFTMAX, SIGMOID, SOFTPLUS, SUM))
NORM_CODES = {"softmax": SOFTMAX, "sigmoid": SIGMOID, "softplus": SOFTPLUS}

#: Input dtypes the kernels take; others (float64) fall back to the reference.
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """``True`` when Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def pow2(n: int) -> int:
    """The smallest power of two >= ``max(n, 1)``."""
    return triton.next_power_of_2(max(int(n), 1))


# --------------------------------------------------------------------------- normaliser math
@triton.jit
def sigmoid(s):
    return 1.0 / (1.0 + tl.exp(-s))


@triton.jit
def softplus(s):
    """:math:`\\log(1 + e^s) = \\max(s, 0) + \\log(1 + e^{-|s|})`, with a series for tiny terms."""
    x = tl.exp(-tl.abs(s))
    return tl.maximum(s, 0.0) + tl.where(x < 1e-4, x * (1.0 - 0.5 * x), tl.log(1.0 + x))


@triton.jit
def edge_weights(s, stat, NORM: tl.constexpr):
    """Attention weights from scores and the row statistic (``exp(s - lse)``, ``softplus(s)/Z``, ``sigmoid(s)``)."""
    if NORM == NORM_SOFTMAX:
        a = tl.exp(s - stat)
    elif NORM == NORM_SOFTPLUS:
        a = softplus(s) * tl.exp(-stat)
    else:
        a = sigmoid(s)
    return a


@triton.jit
def score_grad(da, a, s, stat, delta, NORM: tl.constexpr):
    """:math:`\\partial s` from :math:`\\partial a` (see ``reference.edge_normalize_backward``)."""
    if NORM == NORM_SOFTMAX:
        ds = a * (da - delta)
    elif NORM == NORM_SOFTPLUS:
        ds = (da - delta) * sigmoid(s) * tl.exp(-stat)
    else:
        ds = da * a * (1.0 - a)
    return ds


@triton.jit
def online_update(m, l, s, NORM: tl.constexpr):
    """Folds a tile of scores ``s [BE, BH]`` into the running ``(m, l)``.

    Returns ``(m, l, p, alpha)``: the new state, the unnormalised weights ``p [BE, BH]`` and
    the factor ``alpha [BH]`` that rescales earlier accumulations (1 without softmax).
    Masked scores must be ``-inf``; a row whose scores are all ``-inf`` keeps ``m = -inf``, ``l = 0``.
    """
    if NORM == NORM_SOFTMAX:
        m_new = tl.maximum(m, tl.max(s, 0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m - m_safe)
        p = tl.exp(s - m_safe[None, :])
        l = l * alpha + tl.sum(p, 0)
        m = m_new
    else:
        if NORM == NORM_SOFTPLUS:
            p = softplus(s)
        else:
            p = sigmoid(s)
        alpha = tl.full(l.shape, 1.0, tl.float32)
        l = l + tl.sum(p, 0)
    return m, l, p, alpha


@triton.jit
def finalize_stat(m, l, NORM: tl.constexpr):
    """The row statistic: lse (softmax), log Z (softplus), 0 (sigmoid), l (SUM); +inf for empty rows."""
    log_l = tl.log(tl.where(l > 0, l, 1.0))
    if NORM == NORM_SOFTMAX:
        stat = tl.where(l > 0, tl.where(m == float("-inf"), 0.0, m) + log_l, float("inf"))
    elif NORM == NORM_SOFTPLUS:
        stat = tl.where(l > 0, log_l, float("inf"))
    elif NORM == NORM_SIGMOID:
        stat = tl.zeros(l.shape, tl.float32)
    else:
        stat = l
    return stat


@triton.jit
def finalize_acc(acc, l, NORM: tl.constexpr):
    """``acc / l`` for softmax and softplus (zero for empty rows), ``acc`` otherwise."""
    if NORM == NORM_SOFTMAX or NORM == NORM_SOFTPLUS:
        acc = acc / tl.where(l > 0, l, 1.0)[:, None]
    return acc


# --------------------------------------------------------------------------- tiles
@triton.jit
def load_item(items_ptr, item):
    """One work item of a schedule (:mod:`.schedule`): ``(node, start, end, slot)``."""
    base = items_ptr + item * 4
    return tl.load(base).to(tl.int64), tl.load(base + 1), tl.load(base + 2), tl.load(base + 3)


@triton.jit
def load_node(base, node, offs_h, offs_c, H, C):
    """Row ``node`` of a ``[N, H, C]`` tensor for the heads ``offs_h``: ``[BH, BC]`` in fp32."""
    mask = (offs_h < H)[:, None] & (offs_c < C)[None, :]
    return tl.load(base + node * (H * C) + offs_h[:, None] * C + offs_c[None, :], mask=mask,
                   other=0.0).to(tl.float32)


@triton.jit
def store_node(base, node, x, offs_h, offs_c, H, C):
    mask = (offs_h < H)[:, None] & (offs_c < C)[None, :]
    tl.store(base + node * (H * C) + offs_h[:, None] * C + offs_c[None, :],
             x.to(base.dtype.element_ty), mask=mask)


@triton.jit
def gather_nodes(base, idx, mask_e, offs_h, offs_c, H, C):
    """Rows ``idx [BE]`` (int64) of a ``[N, H, C]`` tensor: ``[BE, BH, BC]`` in fp32, zero where masked."""
    mask = mask_e[:, None, None] & (offs_h < H)[None, :, None] & (offs_c < C)[None, None, :]
    ptrs = base + idx[:, None, None] * (H * C) + offs_h[None, :, None] * C + offs_c[None, None, :]
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def edge_offsets(offs_e, offs_h, H):
    """Offsets of ``[E, H]`` per-edge values for edges ``offs_e`` and heads ``offs_h`` (int64)."""
    return offs_e.to(tl.int64)[:, None] * H + offs_h[None, :]


# --------------------------------------------------------------------------- split-K combine
@triton.jit
def _combine_kernel(splits_ptr, pm_ptr, pl_ptr, pacc_ptr, stat_ptr, acc_ptr, H, F,
                    NORM: tl.constexpr, HAS_STAT: tl.constexpr, HAS_ACC: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_F: tl.constexpr):
    split = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_f = tl.arange(0, BLOCK_F)
    mask_h = offs_h < H
    node = tl.load(splits_ptr + split * 3).to(tl.int64)
    first = tl.load(splits_ptr + split * 3 + 1)
    count = tl.load(splits_ptr + split * 3 + 2)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_F], tl.float32)
    for c in range(0, count):
        slot = (first + c).to(tl.int64)
        alpha = tl.full([BLOCK_H], 1.0, tl.float32)
        beta = tl.full([BLOCK_H], 1.0, tl.float32)
        if HAS_STAT:
            pl = tl.load(pl_ptr + slot * H + offs_h, mask=mask_h, other=0.0)
            if NORM == NORM_SOFTMAX:
                pm = tl.load(pm_ptr + slot * H + offs_h, mask=mask_h, other=float("-inf"))
                m_new = tl.maximum(m, pm)
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                alpha = tl.exp(m - m_safe)
                beta = tl.exp(pm - m_safe)
                m = m_new
            l = l * alpha + pl * beta
        if HAS_ACC:
            acc = acc * alpha[:, None] + beta[:, None] * load_node(pacc_ptr, slot, offs_h, offs_f, H, F)
    if HAS_STAT:
        tl.store(stat_ptr + node * H + offs_h, finalize_stat(m, l, NORM), mask=mask_h)
    if HAS_ACC:
        store_node(acc_ptr, node, finalize_acc(acc, l, NORM), offs_h, offs_f, H, F)


def combine(splits: Tensor, norm: int, heads: int, stat: Tensor | None = None,
            partial_m: Tensor | None = None, partial_l: Tensor | None = None,
            out: Tensor | None = None, partial_acc: Tensor | None = None) -> None:
    """Merges the partial results of split nodes into ``stat [N, H]`` and/or ``out [N, H, F]``.

    Args:
        splits: ``[R, 3]`` int32 ``(node, first slot, number of slots)``.
        norm: normaliser code; with ``stat`` the partial ``(m, l)`` ``[P, H]`` are merged.
        out, partial_acc: ``[N, H, F]`` and ``[P, H, F]`` accumulators (optional).
    """
    if splits.numel() == 0:
        return
    has_stat, has_acc = stat is not None, out is not None
    width = out.size(-1) if has_acc else 1
    block_f = pow2(width)
    block_h = min(pow2(heads), max(1, 4096 // block_f))
    dummy = splits
    grid = (splits.size(0), triton.cdiv(heads, block_h))
    _combine_kernel[grid](splits, partial_m if has_stat else dummy, partial_l if has_stat else dummy,
                          partial_acc if has_acc else dummy, stat if has_stat else dummy,
                          out if has_acc else dummy, heads, width, NORM=norm, HAS_STAT=has_stat,
                          HAS_ACC=has_acc, BLOCK_H=block_h, BLOCK_F=block_f,
                          num_warps=4 if block_h * block_f <= 1024 else 8)
