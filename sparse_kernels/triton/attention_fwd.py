r"""Fused graph-attention forward on the CSR by destination.

One program per work item (a destination row, or a chunk of a long row, see
:mod:`~sparse_kernels.triton.schedule`) and per block of heads. It walks the row's edges in
tiles of ``BLOCK_E``, gathers the contiguous rows ``k_j`` and ``v_j`` of all its heads at once,
and keeps the online-softmax state in fp32:

.. math::
    s_{ij} = \text{scale}\,\langle q_i, k_j\rangle + b_{ij},\quad
    m \leftarrow \max(m, \max_j s_{ij}),\quad
    l \leftarrow l\,e^{m_{\text{old}} - m} + \sum_j e^{s_{ij} - m},\quad
    \text{acc} \leftarrow \text{acc}\,e^{m_{\text{old}} - m} + \sum_j e^{s_{ij} - m} v_j

(sigmoid and softplus add their weights without rescaling). A whole row writes
``out = acc / l`` (``acc`` for sigmoid) in the input dtype and the fp32 statistic ``stat``
(lse, log Z or 0; ``+inf`` for a row without edges, whose output is zero); a chunk of a split
row writes ``(m, l, acc)`` to scratch slots that :func:`~sparse_kernels.triton._common.combine`
merges. Memory: :math:`O(N H D_v)` plus the scratch of split rows; nothing per edge and feature.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._common import (NORM_CODES, combine, edge_offsets, finalize_acc, finalize_stat, gather_nodes, load_item,
                      load_node, online_update, store_node)
from .schedule import launch_config, plan_for

__all__ = ["attention_fwd"]


@triton.jit
def _attention_fwd_kernel(items_ptr, col_ptr, q_ptr, k_ptr, v_ptr, bias_ptr, out_ptr, stat_ptr,
                          pm_ptr, pl_ptr, pacc_ptr, scale, H, D, DV,
                          NORM: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr,
                          BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)

    q = load_node(q_ptr, node, offs_h, offs_d, H, D)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_e = offs_e < end
        mask_eh = mask_e[:, None] & mask_h[None, :]
        j = tl.load(col_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
        k = gather_nodes(k_ptr, j, mask_e, offs_h, offs_d, H, D)
        v = gather_nodes(v_ptr, j, mask_e, offs_h, offs_dv, H, DV)  # both gathers in flight at once
        s = tl.sum(q[None, :, :] * k, 2) * scale
        if HAS_BIAS:
            s += tl.load(bias_ptr + edge_offsets(offs_e, offs_h, H), mask=mask_eh, other=0.0).to(tl.float32)
        s = tl.where(mask_eh, s, float("-inf"))
        m, l, p, alpha = online_update(m, l, s, NORM)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v, 0)

    if slot < 0:
        tl.store(stat_ptr + node * H + offs_h, finalize_stat(m, l, NORM), mask=mask_h)
        store_node(out_ptr, node, finalize_acc(acc, l, NORM), offs_h, offs_dv, H, DV)
    else:
        part = slot.to(tl.int64)
        tl.store(pm_ptr + part * H + offs_h, m, mask=mask_h)
        tl.store(pl_ptr + part * H + offs_h, l, mask=mask_h)
        store_node(pacc_ptr, part, acc, offs_h, offs_dv, H, DV)


def attention_fwd(q: Tensor, k: Tensor, v: Tensor, rowptr: Tensor, col: Tensor, row: Tensor,
                  colptr: Tensor, row_t: Tensor, perm_t: Tensor, bias: Optional[Tensor], scale: float,
                  normalizer: str) -> tuple[Tensor, Tensor]:
    """Triton implementation of ``sparse_kernels::attention_fwd`` (same signature and results).

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; v: ``[N_src, H, Dv]`` (contiguous, one dtype).
        rowptr, col: the CSR; bias: ``[E, H]`` in CSR order or ``None``.

    Returns:
        ``out`` ``[N_dst, H, Dv]`` in ``q.dtype`` and ``stat`` ``[N_dst, H]`` float32.
    """
    n_dst, heads, dim = q.shape
    dim_v = v.size(2)
    norm = NORM_CODES[normalizer]
    out = q.new_empty(n_dst, heads, dim_v)
    stat = q.new_empty(n_dst, heads, dtype=torch.float32)
    if n_dst == 0:
        return out, stat
    plan = plan_for(rowptr)
    cfg = launch_config(max(dim, dim_v), heads, plan.mean_degree)
    slots = max(plan.num_slots, 1)
    pm = q.new_empty(slots, heads, dtype=torch.float32)
    pl = torch.empty_like(pm)
    pacc = q.new_empty(slots, heads, dim_v, dtype=torch.float32)
    grid = (plan.items.size(0), triton.cdiv(heads, cfg["BLOCK_H"]))
    _attention_fwd_kernel[grid](plan.items, col, q, k, v, bias if bias is not None else q, out, stat, pm, pl, pacc,
                                float(scale), heads, dim, dim_v, NORM=norm, HAS_BIAS=bias is not None,
                                BLOCK_E=cfg["BLOCK_E"], BLOCK_H=cfg["BLOCK_H"], BLOCK_D=triton.next_power_of_2(dim),
                                BLOCK_DV=triton.next_power_of_2(dim_v), num_warps=cfg["num_warps"])
    combine(plan.splits, norm, heads, stat=stat, partial_m=pm, partial_l=pl, out=out, partial_acc=pacc)
    return out, stat
