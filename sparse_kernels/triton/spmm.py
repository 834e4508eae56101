r"""Row-parallel SpMM: :math:`o_n = \sum_{e \in \text{ptr}[n] : \text{ptr}[n+1]} w_e\, x_{\text{gather}(e)}`.

Runs on the degree-adaptive :class:`~sparse_kernels.triton.schedule.Plan` of ``ptr`` (long rows
are split and their partial sums merged in a fixed order), accumulating in fp32. Used for both
orientations: the CSR (``ptr = rowptr``) and, in the backward passes, its transpose
(``ptr = colptr`` with the weights permuted to CSC order).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._common import SUM, combine, edge_offsets, gather_nodes, load_item, store_node
from .schedule import launch_config, plan_for

__all__ = ["spmm"]


@triton.jit
def _spmm_kernel(items_ptr, gather_ptr, w_ptr, x_ptr, out_ptr, pout_ptr, H, D,
                 BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    item = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask_h = offs_h < H
    node, start, end, slot = load_item(items_ptr, item)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs_e = e0 + tl.arange(0, BLOCK_E)
        mask_e = offs_e < end
        j = tl.load(gather_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
        w = tl.load(w_ptr + edge_offsets(offs_e, offs_h, H), mask=mask_e[:, None] & mask_h[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.sum(w[:, :, None] * gather_nodes(x_ptr, j, mask_e, offs_h, offs_d, H, D), 0)
    if slot < 0:
        store_node(out_ptr, node, acc, offs_h, offs_d, H, D)
    else:
        store_node(pout_ptr, slot.to(tl.int64), acc, offs_h, offs_d, H, D)


def spmm(weight: Tensor, x: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    """Triton implementation of ``sparse_kernels::spmm``: ``[len(ptr) - 1, H, D]`` in ``x.dtype``.

    Args:
        weight: ``[E, H]`` in the order of ``gather``; x: ``[N_x, H, D]``;
        ptr: ``[N + 1]`` segment offsets; gather: ``[E]``; segment: unused (implied by ``ptr``).
    """
    num_out, (_, heads, dim) = ptr.numel() - 1, x.shape
    out = x.new_empty(num_out, heads, dim)
    if num_out == 0:
        return out
    plan = plan_for(ptr)
    cfg = launch_config(dim, heads, plan.mean_degree)
    pout = x.new_empty(max(plan.num_slots, 1), heads, dim, dtype=torch.float32)
    grid = (plan.items.size(0), triton.cdiv(heads, cfg["BLOCK_H"]))
    _spmm_kernel[grid](plan.items, gather, weight, x, out, pout, heads, dim, BLOCK_E=cfg["BLOCK_E"],
                       BLOCK_H=cfg["BLOCK_H"], BLOCK_D=triton.next_power_of_2(dim), num_warps=cfg["num_warps"])
    combine(plan.splits, SUM, heads, out=out, partial_acc=pout)
    return out
