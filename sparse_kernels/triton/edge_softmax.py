r"""Unfused edge normalisation: per-destination softmax / softplus / sigmoid of edge scores, and its gradient.

Forward, for scores ``s [E, H]`` in CSR order:

1. a row-parallel pass on the degree-adaptive plan of ``ptr`` reduces each destination's
   scores to its statistic (online log-sum-exp of the scores for softmax, of :math:`\log\operatorname{softplus}`
   for softplus; split rows are merged by :func:`~sparse_kernels.triton._common.combine`);
2. an edge-parallel pass writes :math:`a_e = \operatorname{normalise}(s_e, \text{stat}_{\text{segment}(e)})`.

Backward: the row pass reduces :math:`\delta_i = \sum_j a_{ij}\,\partial a_{ij}` (plain sums), then an
edge-parallel pass writes :math:`\partial s` (see ``reference.edge_normalize_backward``).
Sigmoid needs no row pass. No atomics: results are bitwise reproducible.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._common import (NORM_CODES, NORM_SIGMOID, NORM_SUM, SIGMOID, SUM, combine, edge_offsets, edge_weights,
                      finalize_stat, load_item, online_update, score_grad)
from .schedule import edge_tile, launch_config, plan_for

__all__ = ["edge_softmax", "edge_softmax_bwd"]


@triton.jit
def _row_stat_kernel(items_ptr, x_ptr, y_ptr, stat_ptr, pm_ptr, pl_ptr, H,
                     NORM: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr):
    """Per-row statistic of ``x`` (``NORM`` softmax/softplus), or ``sum(x * y)`` (``NORM == SUM``)."""
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_eh = (offs_e < end)[:, None] & mask_h[None, :]
        offs = edge_offsets(offs_e, offs_h, H)
        if NORM == NORM_SUM:
            x = tl.load(x_ptr + offs, mask=mask_eh, other=0.0).to(tl.float32)
            l += tl.sum(x * tl.load(y_ptr + offs, mask=mask_eh, other=0.0).to(tl.float32), 0)
        else:
            s = tl.load(x_ptr + offs, mask=mask_eh, other=float("-inf")).to(tl.float32)
            m, l, p, alpha = online_update(m, l, s, NORM)
    if slot < 0:
        tl.store(stat_ptr + node * H + offs_h, finalize_stat(m, l, NORM), mask=mask_h)
    else:
        part = slot.to(tl.int64)
        tl.store(pm_ptr + part * H + offs_h, m, mask=mask_h)
        tl.store(pl_ptr + part * H + offs_h, l, mask=mask_h)


@triton.jit
def _edge_kernel(s_ptr, a_ptr, da_ptr, segment_ptr, stat_ptr, delta_ptr, out_ptr, E, H,
                 NORM: tl.constexpr, GRAD: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr):
    """Weights from scores (``GRAD=False``) or score gradients from weight gradients (``GRAD=True``)."""
    offs_e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    mask_e = offs_e < E
    mask_eh = mask_e[:, None] & (offs_h < H)[None, :]
    offs = edge_offsets(offs_e, offs_h, H)
    s = tl.load(s_ptr + offs, mask=mask_eh, other=0.0).to(tl.float32)
    node_h = tl.load(segment_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)[:, None] * H + offs_h[None, :]
    stat = tl.zeros([BLOCK_E, BLOCK_H], tl.float32)
    delta = tl.zeros([BLOCK_E, BLOCK_H], tl.float32)
    if NORM != NORM_SIGMOID:
        stat = tl.load(stat_ptr + node_h, mask=mask_eh, other=0.0)
    if GRAD:
        a = tl.load(a_ptr + offs, mask=mask_eh, other=0.0).to(tl.float32)
        da = tl.load(da_ptr + offs, mask=mask_eh, other=0.0).to(tl.float32)
        if NORM != NORM_SIGMOID:
            delta = tl.load(delta_ptr + node_h, mask=mask_eh, other=0.0)
        r = score_grad(da, a, s, stat, delta, NORM)
    else:
        r = edge_weights(s, stat, NORM)
    tl.store(out_ptr + offs, r.to(out_ptr.dtype.element_ty), mask=mask_eh)


def _row_reduce(ptr: Tensor, norm: int, x: Tensor, y: Tensor) -> Tensor:
    """``[N, H]`` float32 per-row statistic of ``x`` (or ``sum(x * y)`` for ``SUM``) over ``ptr``'s rows."""
    heads = x.size(1)
    stat = x.new_empty(ptr.numel() - 1, heads, dtype=torch.float32)
    if stat.size(0) == 0:
        return stat
    plan = plan_for(ptr)
    cfg = launch_config(1, heads, plan.mean_degree)
    pm = x.new_empty(max(plan.num_slots, 1), heads, dtype=torch.float32)
    pl = torch.empty_like(pm)
    grid = (plan.items.size(0), triton.cdiv(heads, cfg["BLOCK_H"]))
    _row_stat_kernel[grid](plan.items, x, y, stat, pm, pl, heads, NORM=norm, BLOCK_E=cfg["BLOCK_E"],
                           BLOCK_H=cfg["BLOCK_H"], num_warps=cfg["num_warps"])
    combine(plan.splits, norm, heads, stat=stat, partial_m=pm, partial_l=pl)
    return stat


def _edge_pass(scores: Tensor, segment: Tensor, stat: Tensor, norm: int, weights: Tensor | None = None,
               grad_weights: Tensor | None = None, delta: Tensor | None = None) -> Tensor:
    num_edges, heads = scores.shape
    out = torch.empty_like(scores)
    if num_edges == 0:
        return out
    block_e, block_h = edge_tile(heads)
    grad = weights is not None
    _edge_kernel[(triton.cdiv(num_edges, block_e),)](
        scores, weights if grad else scores, grad_weights if grad else scores, segment, stat,
        delta if delta is not None else stat, out, num_edges, heads, NORM=norm, GRAD=grad,
        BLOCK_E=block_e, BLOCK_H=block_h)
    return out


def edge_softmax(scores: Tensor, ptr: Tensor, segment: Tensor, normalizer: str) -> tuple[Tensor, Tensor]:
    """Triton implementation of ``sparse_kernels::edge_softmax``.

    Args:
        scores: ``[E, H]`` in CSR order; ptr: ``[N + 1]`` row offsets; segment: ``[E]`` row of each edge.

    Returns:
        ``weights`` ``[E, H]`` in ``scores.dtype`` and ``stat`` ``[N, H]`` float32.
    """
    norm = NORM_CODES[normalizer]
    if norm == SIGMOID:
        stat = scores.new_zeros(ptr.numel() - 1, scores.size(1), dtype=torch.float32)
    else:
        stat = _row_reduce(ptr, norm, scores, scores)
    return _edge_pass(scores, segment, stat, norm), stat


def edge_softmax_bwd(grad_weights: Tensor, weights: Tensor, scores: Tensor, stat: Tensor, ptr: Tensor,
                     segment: Tensor, normalizer: str) -> Tensor:
    """Triton implementation of ``sparse_kernels::edge_softmax_bwd``: ``[E, H]`` in ``scores.dtype``."""
    norm = NORM_CODES[normalizer]
    stat = stat.float().contiguous()
    delta = None if norm == SIGMOID else _row_reduce(ptr, SUM, weights, grad_weights)
    return _edge_pass(scores, segment, stat, norm, weights=weights, grad_weights=grad_weights, delta=delta)
