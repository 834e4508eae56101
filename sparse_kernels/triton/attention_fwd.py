r"""Fused graph-attention forward on the CSR by destination.

One program per work item (a destination row, or a chunk of a long row, see
:mod:`~sparse_kernels.triton.schedule`) and per block of heads. It walks the row's edges in
tiles of ``BLOCK_E``, gathers the contiguous rows ``k_j`` and ``v_j`` of all its heads at once
(plus the edge vectors of the edges' user ids ``u``, added to the tiles on the fly,
:func:`~sparse_kernels.triton._common.attention_tile`), and keeps the online-softmax state in fp32:

.. math::
    s_c = \text{scale}\,\langle q_i, k_j + e^k_u\rangle + b_u\ (\text{or the gat, gatv2 scores}),\quad
    m \leftarrow \max(m, \max_c s_c),\quad
    l \leftarrow l\,e^{m_{\text{old}} - m} + \sum_c e^{s_c - m},\quad
    \text{acc} \leftarrow \text{acc}\,e^{m_{\text{old}} - m} + \sum_c \mu_c\, e^{s_c - m} (v_j + e^v_u)

(softplus runs the same update on :math:`\log\operatorname{softplus}(s)`, exact for every finite score;
sigmoid adds its weights without rescaling). :math:`\mu_c` is the dropout factor
(``keep / (1 - p)`` from the counter hash of :func:`~sparse_kernels.triton._common.dropout_factor`
with the seed read from its tensor on the device; 1 without dropout): it scales the accumulated
weights only, so ``l`` and the statistic stay those of the undropped weights. A whole row writes
``out = acc / l`` (``acc`` for sigmoid) in the input dtype and the fp32 statistic ``stat``
(lse, log Z or 0; ``+inf`` for a row without edges, whose output is zero); a chunk of a split
row writes ``(m, l, acc)`` to scratch slots that :func:`~sparse_kernels.triton._common.combine`
merges. Memory: :math:`O(N H D_v)` plus the scratch of split rows; nothing per edge and feature.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..call import KernelCall
from ._common import (NORM_CODES, SCORE_GATV2, attention_tile, combine, dropout_factor, dropout_keys, edge_inputs,
                      finalize_acc, finalize_stat, load_item, load_node, online_update, store_node)
from .schedule import launch_config, plan_for

__all__ = ["attention_fwd"]


@triton.jit
def _attention_fwd_kernel(items_ptr, col_ptr, eid_ptr, bias_ptr, ek_ptr, ev_ptr, seed_ptr, att_ptr, q_ptr, k_ptr,
                          v_ptr, out_ptr, stat_ptr, pm_ptr, pl_ptr, pacc_ptr, scale, slope, threshold, keep_scale, H,
                          D, DV, NORM: tl.constexpr, SCORE: tl.constexpr, HAS_EID: tl.constexpr,
                          HAS_BIAS: tl.constexpr, HAS_EK: tl.constexpr, HAS_EV: tl.constexpr, DROPOUT: tl.constexpr,
                          BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                          BLOCK_DV: tl.constexpr):
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)
    if DROPOUT:
        key0, key1 = dropout_keys(seed_ptr)

    q = load_node(q_ptr, node, offs_h, offs_d, H, D)
    att = q  # a placeholder: only the gatv2 score reads att
    if SCORE == SCORE_GATV2:
        att = load_node(att_ptr, 0, offs_h, offs_d, H, D)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        _, uh, k, v, s = attention_tile(q, att, offs_e, offs_e < end, offs_h, offs_d, offs_dv, col_ptr, eid_ptr,
                                        bias_ptr, ek_ptr, ev_ptr, k_ptr, v_ptr, scale, slope, H, D, DV, SCORE,
                                        HAS_EID, HAS_BIAS, HAS_EK, HAS_EV)
        m, l, p, alpha = online_update(m, l, s, NORM)
        if DROPOUT:
            p *= dropout_factor(uh, key0, key1, threshold, keep_scale)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v, 0)

    if slot < 0:
        tl.store(stat_ptr + node * H + offs_h, finalize_stat(m, l, NORM), mask=mask_h)
        store_node(out_ptr, node, finalize_acc(acc, l, NORM), offs_h, offs_dv, H, DV)
    else:
        part = slot.to(tl.int64)
        tl.store(pm_ptr + part * H + offs_h, m, mask=mask_h)
        tl.store(pl_ptr + part * H + offs_h, l, mask=mask_h)
        store_node(pacc_ptr, part, acc, offs_h, offs_dv, H, DV)


def attention_fwd(call: KernelCall) -> tuple[Tensor, Tensor]:
    """Triton implementation of the fused forward (:class:`~sparse_kernels.call.KernelCall` in, the
    reference's results out): ``out`` ``[N_dst, H, Dv]`` in ``q.dtype`` and ``stat`` ``[N_dst, H]`` float32."""
    q, k, v = call.inputs.q, call.inputs.k, call.inputs.v
    rowptr, col, o = call.graph.rowptr, call.graph.col, call.options
    scale, normalizer, p_threshold, keep_scale = o.scale, o.normalizer, o.p_threshold, o.keep_scale
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
    optional, flags = edge_inputs(call)
    grid = (plan.items.size(0), triton.cdiv(heads, cfg["BLOCK_H"]))
    _attention_fwd_kernel[grid](plan.items, col, *optional, q, k, v, out, stat, pm, pl, pacc, float(scale),
                                float(o.negative_slope), int(p_threshold), float(keep_scale), heads, dim, dim_v,
                                NORM=norm, **flags,
                                BLOCK_E=cfg["BLOCK_E"], BLOCK_H=cfg["BLOCK_H"], BLOCK_D=triton.next_power_of_2(dim),
                                BLOCK_DV=triton.next_power_of_2(dim_v), num_warps=cfg["num_warps"])
    combine(plan.splits, norm, heads, stat=stat, partial_m=pm, partial_l=pl, out=out, partial_acc=pacc)
    return out, stat
