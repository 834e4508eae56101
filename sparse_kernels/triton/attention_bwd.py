r"""Fused graph-attention backward without atomics.

The weights are recomputed from the saved row statistic, :math:`a_c = e^{s_c - \mathrm{lse}_i}`
(softplus: :math:`\operatorname{softplus}(s_c) / Z_i`; sigmoid: :math:`\sigma(s_c)`), the dropout
factor :math:`\mu_c` from the counter hash and the seed (the forward's mask, never stored), and with
:math:`w_c = \mu_c a_c`, :math:`\partial a_c = \mu_c \langle \partial o_i, v_j + e^v_u\rangle`,
:math:`\delta_i = \langle \partial o_i, o_i\rangle = \sum_c a_c\,\partial a_c` and :math:`\partial s_c` from
:func:`~sparse_kernels.triton._common.score_grad`:

* the **row pass** (CSR by destination, tiles of
  :func:`~sparse_kernels.triton._common.attention_tile`) accumulates
  :math:`\partial q_i = \text{scale} \sum_c \partial s_c (k_j + e^k_u)`, writes the per-edge gradients
  :math:`\partial b_u = \partial s_c`, :math:`\partial e^k_u = \text{scale}\,\partial s_c\, q_i` and
  :math:`\partial e^v_u = w_c\,\partial o_i` at the user id ``u`` of each edge, and stores
  :math:`\partial s_c` and :math:`w_c` (``[E, H]`` fp32, CSR order);
* the **column pass** (cached CSC by source) reads them at CSR position ``perm_t[t]`` of CSC
  position ``t`` and accumulates :math:`\partial k_j = \text{scale} \sum_c \partial s_c\, q_i` and
  :math:`\partial v_j = \sum_c w_c\, \partial o_i`, without recomputing scores (no key, bias or edge
  vector reads).

The gat and gatv2 scores (:mod:`sparse_kernels.call`) change the score's share, with :math:`z` the
LeakyReLU input (recomputed, never stored) and :math:`\lambda'` the LeakyReLU derivative:

* gat: :math:`g_c = \partial s_c\,\lambda'(z_c)` gives :math:`\partial q_i = \sum_c g_c` and
  :math:`\partial b_u = g_c` in the row pass, which stores :math:`g_c` in place of :math:`\partial s_c`, so
  that the column pass sums :math:`\partial k_j = \sum_c g_c`;
* gatv2: :math:`g_c = \partial s_c\, \text{att} \odot \lambda'(z_c)` ``[H, D]`` gives
  :math:`\partial q_i = \sum_c g_c`, :math:`\partial e^k_u = g_c`, :math:`\partial b_u = \partial s_c` and each
  work item's share of :math:`\partial\,\text{att} = \sum_c \partial s_c \lambda(z_c)` (an fp32 ``[W, H, D]``
  scratch over the row pass's work items, summed in item order by
  :func:`~sparse_kernels.triton._common.sum_rows`) in the row pass; the column pass recomputes
  :math:`z_c = q_i + k_j + e^k_u` and sums :math:`\partial k_j = \sum_c g_c`.

Every output row is owned by one program (or by a fixed set of split-K slots merged in a fixed
order) and every per-edge gradient is written once, so two runs give bitwise-identical gradients.
Accumulation is fp32.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..call import Grads, KernelCall
from ._common import (GATV2, NORM_CODES, NORM_SIGMOID, SCORE_DOT, SCORE_GAT, SCORE_GATV2, SIGMOID, SUM,
                      attention_tile, combine, dropout_factor, dropout_keys, edge_inputs, edge_offsets, edge_weights,
                      gather_nodes, leaky_relu, leaky_relu_grad, load_item, load_node, scatter_edges, score_grad,
                      store_node, sum_rows)
from .schedule import launch_config, plan_for

__all__ = ["attention_bwd"]


@triton.jit
def _row_pass_kernel(items_ptr, col_ptr, eid_ptr, bias_ptr, ek_ptr, ev_ptr, seed_ptr, att_ptr, q_ptr, k_ptr, v_ptr,
                     do_ptr, stat_ptr, delta_ptr, dq_ptr, dbias_ptr, dek_ptr, dev_ptr, ds_ptr, w_ptr, pdq_ptr,
                     datt_ptr, scale, slope, threshold, keep_scale, H, D, DV,
                     NORM: tl.constexpr, SCORE: tl.constexpr, HAS_EID: tl.constexpr, HAS_BIAS: tl.constexpr,
                     HAS_EK: tl.constexpr, HAS_EV: tl.constexpr, DROPOUT: tl.constexpr, FOLD_EDGE: tl.constexpr,
                     BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
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
        datt = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
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
        u, uh, k, v, s = attention_tile(q, att, offs_e, mask_e, offs_h, offs_d, offs_dv, col_ptr, eid_ptr, bias_ptr,
                                        ek_ptr, ev_ptr, k_ptr, v_ptr, scale, slope, H, D, DV, SCORE,
                                        HAS_EID, HAS_BIAS, HAS_EK, HAS_EV)
        a = edge_weights(s, stat[None, :], NORM)
        da = tl.sum(do[None, :, :] * v, 2)
        w = a
        if DROPOUT:
            mu = dropout_factor(uh, key0, key1, threshold, keep_scale)
            da *= mu
            w *= mu
        ds = tl.where(mask_eh, score_grad(da, a, s, stat[None, :], delta[None, :], NORM), 0.0)
        if SCORE == SCORE_GAT:  # from here on the gradient of the LeakyReLU input (k holds it, BD = 1)
            ds *= leaky_relu_grad(tl.sum(k, 2), slope)
        elif SCORE == SCORE_GATV2:  # the gradient of z = q_i + k_j + e^k_u (k holds z)
            dz = ds[:, :, None] * att[None, :, :] * leaky_relu_grad(k, slope)
            datt += tl.sum(ds[:, :, None] * leaky_relu(k, slope), 0)
        csr_eh = edge_offsets(offs_e, offs_h, H)
        tl.store(ds_ptr + csr_eh, ds, mask=mask_eh)
        tl.store(w_ptr + csr_eh, w, mask=mask_eh)
        if HAS_BIAS:
            tl.store(dbias_ptr + uh, ds.to(dbias_ptr.dtype.element_ty), mask=mask_eh)
        if HAS_EK:
            if SCORE == SCORE_DOT:
                dek = (ds * scale)[:, :, None] * q[None, :, :]
            else:  # gatv2 (gat takes no edge_k)
                dek = dz
            if FOLD_EDGE:   # edge_v is edge_k: one gradient, the sum of both terms
                dek += w[:, :, None] * do[None, :, :]
            scatter_edges(dek_ptr, u, dek, mask_e, offs_h, offs_d, H, D)
        if HAS_EV and not FOLD_EDGE:
            scatter_edges(dev_ptr, u, w[:, :, None] * do[None, :, :], mask_e, offs_h, offs_dv, H, DV)
        if SCORE == SCORE_DOT:
            dq += tl.sum(ds[:, :, None] * k, 0)
        elif SCORE == SCORE_GAT:
            dq += tl.sum(ds, 0)[:, None]
        else:
            dq += tl.sum(dz, 0)
    if SCORE == SCORE_GATV2:  # this item's share of att's gradient, summed over the items in a fixed order
        store_node(datt_ptr, item.to(tl.int64), datt, offs_h, offs_d, H, D)
    dq = dq * scale
    if slot < 0:
        store_node(dq_ptr, node, dq, offs_h, offs_d, H, D)
    else:
        store_node(pdq_ptr, slot.to(tl.int64), dq, offs_h, offs_d, H, D)


@triton.jit
def _column_pass_kernel(items_ptr, row_t_ptr, perm_t_ptr, eid_ptr, ek_ptr, att_ptr, ds_ptr, w_ptr, q_ptr, k_ptr,
                        do_ptr, dk_ptr, dv_ptr, pdk_ptr, pdv_ptr, scale, slope, H, D, DV, SCORE: tl.constexpr,
                        HAS_EID: tl.constexpr, HAS_EK: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr,
                        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)
    if SCORE == SCORE_GATV2:
        att = load_node(att_ptr, 0, offs_h, offs_d, H, D)
        k = load_node(k_ptr, node, offs_h, offs_d, H, D)

    dk = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_H, BLOCK_DV], tl.float32)
    for t0 in range(start, end, BLOCK_E):
        offs_t = t0 + tl.arange(0, BLOCK_E)
        mask_t = offs_t < end
        mask_th = mask_t[:, None] & mask_h[None, :]
        i = tl.load(row_t_ptr + offs_t, mask=mask_t, other=0).to(tl.int64)
        c = tl.load(perm_t_ptr + offs_t, mask=mask_t, other=0)
        csr_eh = edge_offsets(c, offs_h, H)
        ds = tl.load(ds_ptr + csr_eh, mask=mask_th, other=0.0)
        w = tl.load(w_ptr + csr_eh, mask=mask_th, other=0.0)
        if SCORE == SCORE_DOT:
            dk += tl.sum(ds[:, :, None] * gather_nodes(q_ptr, i, mask_t, offs_h, offs_d, H, D), 0)
        elif SCORE == SCORE_GAT:  # ds holds the gradient of the LeakyReLU input
            dk += tl.sum(ds, 0)[:, None]
        else:  # recompute z = q_i + k_j + e^k_u
            z = gather_nodes(q_ptr, i, mask_t, offs_h, offs_d, H, D) + k[None, :, :]
            if HAS_EK:
                u = c.to(tl.int64)
                if HAS_EID:
                    u = tl.load(eid_ptr + u, mask=mask_t, other=0).to(tl.int64)
                z += gather_nodes(ek_ptr, u, mask_t, offs_h, offs_d, H, D)
            dk += tl.sum(ds[:, :, None] * att[None, :, :] * leaky_relu_grad(z, slope), 0)
        dv += tl.sum(w[:, :, None] * gather_nodes(do_ptr, i, mask_t, offs_h, offs_dv, H, DV), 0)
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


def _column_flags(flags: dict) -> dict:
    """The column pass's flags from the row pass's (:func:`~sparse_kernels.triton._common.edge_inputs`): the
    edge ids and ``edge_k`` matter to the gatv2 key gradient only (one dot or gat kernel serves every input)."""
    gatv2 = flags["SCORE"] == GATV2
    return dict(SCORE=flags["SCORE"], HAS_EID=gatv2 and flags["HAS_EID"], HAS_EK=gatv2 and flags["HAS_EK"])


def _like_or_empty(x: Optional[Tensor], q: Tensor) -> Tensor:
    return q.new_empty(0) if x is None else torch.empty_like(x)


def attention_bwd(call: KernelCall, out: Tensor, stat: Tensor, grad_out: Tensor) -> Grads:
    """Triton implementation of the fused backward: the gradients in the inputs' dtypes, the per-edge
    ones in the user's edge order (with ``shared_edge`` ``dedge_k`` holds both edge terms)."""
    i, g, o = call.inputs, call.graph, call.options
    q, k, v, bias, edge_k = i.q, i.k, i.v, i.bias, i.edge_k
    rowptr, col, colptr, row_t, perm_t = g.rowptr, g.col, g.colptr, g.row_t, g.perm_t
    scale, normalizer, p_threshold, keep_scale, fold_edge_grads = (o.scale, o.normalizer, o.p_threshold,
                                                                   o.keep_scale, o.shared_edge)
    n_dst, heads, dim = q.shape
    n_src, dim_v, num_edges = k.size(0), v.size(2), col.numel()
    norm = NORM_CODES[normalizer]
    stat = stat.float().contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).contiguous() if norm != SIGMOID else stat
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias, dek = (_like_or_empty(x, q) for x in (bias, edge_k))
    dev = q.new_empty(0) if fold_edge_grads else _like_or_empty(i.edge_v, q)
    datt = None if i.att is None else torch.zeros_like(i.att)
    ds, w = q.new_empty(2, num_edges, heads, dtype=torch.float32)  # row pass -> column pass, CSR order
    optional, flags = edge_inputs(call)
    eid, edge_k_or_q, att_or_q = optional[0], optional[2], optional[5]

    if n_dst > 0:
        plan = plan_for(rowptr)
        grid, meta = _launch_meta(plan, heads, dim, dim_v)
        pdq = q.new_empty(max(plan.num_slots, 1), heads, dim, dtype=torch.float32)
        # gatv2: each work item's share of att's gradient, summed in item order below (no atomics)
        datt_items = q.new_empty(plan.items.size(0) if datt is not None else 1, heads, dim, dtype=torch.float32)
        _row_pass_kernel[grid](plan.items, col, *optional, q, k, v, grad_out, stat, delta, dq, dbias, dek, dev, ds,
                               w, pdq, datt_items, float(scale), float(o.negative_slope), int(p_threshold),
                               float(keep_scale), heads, dim, dim_v, NORM=norm, FOLD_EDGE=fold_edge_grads, **flags,
                               **meta)
        combine(plan.splits, SUM, heads, out=dq, partial_acc=pdq)
        if datt is not None:
            sum_rows(datt_items, datt)
    if n_src > 0:
        plan_t = plan_for(colptr)
        grid, meta = _launch_meta(plan_t, heads, dim, dim_v)
        slots = max(plan_t.num_slots, 1)
        pdk = q.new_empty(slots, heads, dim, dtype=torch.float32)
        pdv = q.new_empty(slots, heads, dim_v, dtype=torch.float32)
        _column_pass_kernel[grid](plan_t.items, row_t, perm_t, eid, edge_k_or_q, att_or_q, ds, w, q, k, grad_out, dk,
                                  dv, pdk, pdv, float(scale), float(o.negative_slope), heads, dim, dim_v,
                                  **_column_flags(flags), **meta)
        combine(plan_t.splits, SUM, heads, out=dk, partial_acc=pdk)
        combine(plan_t.splits, SUM, heads, out=dv, partial_acc=pdv)
    return Grads.from_flat((dq, dk, dv, dbias, dek, dev, datt), call)
