r"""Edge-parallel SDDMM: :math:`s_e = \langle a_{\text{segment}(e)}, b_{\text{gather}(e)}\rangle` per head.

One program per tile of ``BLOCK_E`` edges and block of heads; each edge reads one contiguous
row of ``a`` and of ``b`` and writes its ``[H]`` dot products. No reduction across programs,
so the result does not depend on the launch.
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from ._common import edge_offsets, gather_nodes
from .schedule import launch_config

__all__ = ["sddmm"]


@triton.jit
def _sddmm_kernel(a_ptr, b_ptr, segment_ptr, gather_ptr, out_ptr, E, H, D,
                  BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask_e = offs_e < E
    i = tl.load(segment_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
    j = tl.load(gather_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
    s = tl.sum(gather_nodes(a_ptr, i, mask_e, offs_h, offs_d, H, D) *
               gather_nodes(b_ptr, j, mask_e, offs_h, offs_d, H, D), 2)
    tl.store(out_ptr + edge_offsets(offs_e, offs_h, H), s.to(out_ptr.dtype.element_ty),
             mask=mask_e[:, None] & (offs_h < H)[None, :])


def sddmm(a: Tensor, b: Tensor, ptr: Tensor, gather: Tensor, segment: Tensor) -> Tensor:
    """Triton implementation of ``sparse_kernels::sddmm``: ``[E, H]`` in ``a.dtype``.

    Args:
        a: ``[N_a, H, D]`` read at ``segment``; b: ``[N_b, H, D]`` read at ``gather``;
        ptr: the segment offsets (unused here: the kernel is edge-parallel).
    """
    num_edges, (_, heads, dim) = gather.numel(), a.shape
    out = a.new_empty(num_edges, heads)
    if num_edges == 0:
        return out
    cfg = launch_config(dim, heads, mean_degree=64.0)
    grid = (triton.cdiv(num_edges, cfg["BLOCK_E"]), triton.cdiv(heads, cfg["BLOCK_H"]))
    _sddmm_kernel[grid](a, b, segment, gather, out, num_edges, heads, dim, BLOCK_E=cfg["BLOCK_E"],
                        BLOCK_H=cfg["BLOCK_H"], BLOCK_D=triton.next_power_of_2(dim), num_warps=cfg["num_warps"])
    return out
