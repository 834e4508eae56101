r"""Fused graph-attention backward without atomics.

The weights are recomputed from the saved row statistic, :math:`a_{ij} = e^{s_{ij} - \mathrm{lse}_i}`
(softplus: :math:`\operatorname{softplus}(s_{ij}) / Z_i`; sigmoid: :math:`\sigma(s_{ij})`), and with
:math:`\partial a_{ij} = \langle \partial o_i, v_j\rangle`, :math:`\delta_i = \langle \partial o_i, o_i\rangle`
and :math:`\partial s_{ij}` from :func:`~sparse_kernels.triton._common.score_grad`:

* the **row pass** (CSR by destination) accumulates
  :math:`\partial q_i = \text{scale} \sum_j \partial s_{ij} k_j` and writes :math:`\partial b_{ij} = \partial s_{ij}`
  once per edge;
* the **column pass** (cached CSC by source) accumulates
  :math:`\partial k_j = \text{scale} \sum_i \partial s_{ij} q_i` and :math:`\partial v_j = \sum_i a_{ij}\,\partial o_i`,
  reading the bias of CSC position ``c`` at CSR position ``perm_t[c]``.

Every output row is owned by one program (or by a fixed set of split-K slots merged in a fixed
order), so two runs give bitwise-identical gradients. Accumulation is fp32.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._common import (NORM_CODES, NORM_SIGMOID, SIGMOID, SUM, combine, edge_offsets, edge_weights, gather_nodes,
                      load_item, load_node, score_grad, store_node)
from .schedule import launch_config, plan_for

__all__ = ["attention_bwd"]


@triton.jit
def _row_pass_kernel(items_ptr, col_ptr, q_ptr, k_ptr, v_ptr, bias_ptr, do_ptr, stat_ptr, delta_ptr,
                     dq_ptr, dbias_ptr, pdq_ptr, scale, H, D, DV,
                     NORM: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr,
                     BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)

    q = load_node(q_ptr, node, offs_h, offs_d, H, D)
    do = load_node(do_ptr, node, offs_h, offs_dv, H, DV)
    stat = tl.load(stat_ptr + node * H + offs_h, mask=mask_h, other=0.0)
    delta = tl.zeros([BLOCK_H], tl.float32)
    if NORM != NORM_SIGMOID:
        delta = tl.load(delta_ptr + node * H + offs_h, mask=mask_h, other=0.0)
    dq = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_e = offs_e < end
        mask_eh = mask_e[:, None] & mask_h[None, :]
        j = tl.load(col_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
        k = gather_nodes(k_ptr, j, mask_e, offs_h, offs_d, H, D)
        v = gather_nodes(v_ptr, j, mask_e, offs_h, offs_dv, H, DV)
        s = tl.sum(q[None, :, :] * k, 2) * scale
        if HAS_BIAS:
            s += tl.load(bias_ptr + edge_offsets(offs_e, offs_h, H), mask=mask_eh, other=0.0).to(tl.float32)
        s = tl.where(mask_eh, s, float("-inf"))
        a = edge_weights(s, stat[None, :], NORM)
        da = tl.sum(do[None, :, :] * v, 2)
        ds = tl.where(mask_eh, score_grad(da, a, s, stat[None, :], delta[None, :], NORM), 0.0)
        if HAS_BIAS:
            tl.store(dbias_ptr + edge_offsets(offs_e, offs_h, H), ds.to(dbias_ptr.dtype.element_ty), mask=mask_eh)
        dq += tl.sum(ds[:, :, None] * k, 0)
    dq = dq * scale
    if slot < 0:
        store_node(dq_ptr, node, dq, offs_h, offs_d, H, D)
    else:
        store_node(pdq_ptr, slot.to(tl.int64), dq, offs_h, offs_d, H, D)


@triton.jit
def _column_pass_kernel(items_ptr, row_t_ptr, perm_t_ptr, q_ptr, k_ptr, v_ptr, bias_ptr, do_ptr, stat_ptr,
                        delta_ptr, dk_ptr, dv_ptr, pdk_ptr, pdv_ptr, scale, H, D, DV,
                        NORM: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_E: tl.constexpr,
                        BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)

    k = load_node(k_ptr, node, offs_h, offs_d, H, D)
    v = load_node(v_ptr, node, offs_h, offs_dv, H, DV)
    dk = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)
    for c0 in range(start, end, BLOCK_E):
        offs_c = c0 + tl.arange(0, BLOCK_E)
        mask_c = offs_c < end
        mask_ch = mask_c[:, None] & mask_h[None, :]
        i = tl.load(row_t_ptr + offs_c, mask=mask_c, other=0).to(tl.int64)
        q = gather_nodes(q_ptr, i, mask_c, offs_h, offs_d, H, D)
        do = gather_nodes(do_ptr, i, mask_c, offs_h, offs_dv, H, DV)
        s = tl.sum(q * k[None, :, :], 2) * scale
        if HAS_BIAS:
            e = tl.load(perm_t_ptr + offs_c, mask=mask_c, other=0)
            s += tl.load(bias_ptr + edge_offsets(e, offs_h, H), mask=mask_ch, other=0.0).to(tl.float32)
        s = tl.where(mask_ch, s, float("-inf"))
        node_h = i[:, None] * H + offs_h[None, :]
        stat = tl.load(stat_ptr + node_h, mask=mask_ch, other=0.0)
        a = edge_weights(s, stat, NORM)
        da = tl.sum(do * v[None, :, :], 2)
        delta = tl.zeros([BLOCK_E, BLOCK_H], tl.float32)
        if NORM != NORM_SIGMOID:
            delta = tl.load(delta_ptr + node_h, mask=mask_ch, other=0.0)
        ds = tl.where(mask_ch, score_grad(da, a, s, stat, delta, NORM), 0.0)
        dk += tl.sum(ds[:, :, None] * q, 0)
        dv += tl.sum(a[:, :, None] * do, 0)
    dk = dk * scale
    if slot < 0:
        store_node(dk_ptr, node, dk, offs_h, offs_d, H, D)
        store_node(dv_ptr, node, dv, offs_h, offs_dv, H, DV)
    else:
        part = slot.to(tl.int64)
        store_node(pdk_ptr, part, dk, offs_h, offs_d, H, D)
        store_node(pdv_ptr, part, dv, offs_h, offs_dv, H, DV)


def _launch_meta(plan, heads: int, dim: int, dim_v: int) -> tuple[tuple[int, int], dict]:
    cfg = launch_config(max(dim, dim_v), heads, plan.mean_degree)
    grid = (plan.items.size(0), triton.cdiv(heads, cfg["BLOCK_H"]))
    meta = dict(BLOCK_E=cfg["BLOCK_E"], BLOCK_H=cfg["BLOCK_H"], BLOCK_D=triton.next_power_of_2(dim),
                BLOCK_DV=triton.next_power_of_2(dim_v), num_warps=cfg["num_warps"])
    return grid, meta


def attention_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, stat: Tensor,
                  rowptr: Tensor, col: Tensor, row: Tensor, colptr: Tensor, row_t: Tensor, perm_t: Tensor,
                  bias: Optional[Tensor], scale: float,
                  normalizer: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Triton implementation of ``sparse_kernels::attention_bwd`` (same signature and results).

    Returns ``(dq, dk, dv, dbias)`` in the inputs' dtypes; ``dbias`` is empty without a bias.
    """
    n_dst, heads, dim = q.shape
    n_src, dim_v = k.size(0), v.size(2)
    norm = NORM_CODES[normalizer]
    stat = stat.float().contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).contiguous() if norm != SIGMOID else stat
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias = torch.empty_like(bias) if bias is not None else q.new_empty(0)
    has_bias = bias is not None
    bias_arg = bias if has_bias else q

    if n_dst > 0:
        plan = plan_for(rowptr)
        grid, meta = _launch_meta(plan, heads, dim, dim_v)
        pdq = q.new_empty(max(plan.num_slots, 1), heads, dim, dtype=torch.float32)
        _row_pass_kernel[grid](plan.items, col, q, k, v, bias_arg, grad_out, stat, delta, dq,
                               dbias if has_bias else q, pdq, float(scale), heads, dim, dim_v,
                               NORM=norm, HAS_BIAS=has_bias, **meta)
        combine(plan.splits, SUM, heads, out=dq, partial_acc=pdq)
    if n_src > 0:
        plan_t = plan_for(colptr)
        grid, meta = _launch_meta(plan_t, heads, dim, dim_v)
        slots = max(plan_t.num_slots, 1)
        pdk = q.new_empty(slots, heads, dim, dtype=torch.float32)
        pdv = q.new_empty(slots, heads, dim_v, dtype=torch.float32)
        _column_pass_kernel[grid](plan_t.items, row_t, perm_t, q, k, v, bias_arg, grad_out, stat, delta,
                                  dk, dv, pdk, pdv, float(scale), heads, dim, dim_v,
                                  NORM=norm, HAS_BIAS=has_bias, **meta)
        combine(plan_t.splits, SUM, heads, out=dk, partial_acc=pdk)
        combine(plan_t.splits, SUM, heads, out=dv, partial_acc=pdv)
    return dq, dk, dv, dbias
