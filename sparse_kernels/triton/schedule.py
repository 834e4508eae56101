r"""Degree-adaptive work planning and launch configurations.

Real graphs have power-law degrees: with one program per row, a few rows of degree
:math:`10^4`–:math:`10^5` run long after the rest of the GPU has gone idle. A :class:`Plan`
cuts every node's edge list (by destination for a CSR, by source for its transpose) into
*work items* of at most ``chunk`` edges:

* a node of degree ``<= chunk`` is one item that writes its result directly;
* a longer node becomes ``ceil(deg / chunk)`` items writing partial results into consecutive
  scratch *slots*, merged afterwards by :func:`~sparse_kernels.triton._common.combine`
  (flash-decoding's split-K);
* items are ordered longest first, so the heaviest work starts in the first wave
  (longest-processing-time scheduling).

Nodes without edges are items too (empty range), so every output row is written by a kernel.

The plan depends only on the offsets tensor ``ptr`` (``rowptr`` or ``colptr``) and is built
once, then cached on that tensor: the graph's CSR keeps its ``rowptr`` and cached transpose,
so every later call (forward, backward, every layer, every epoch) reuses it.

:func:`launch_config` picks the tile sizes from a small table keyed on the head width and the
mean degree (one fixed configuration in the interpreter).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor

from ._common import interpreting, pow2

__all__ = ["Plan", "plan_for", "build_plan", "default_chunk", "chunk_override", "launch_config", "edge_tile"]

_chunk_override: Optional[int] = None


@dataclass(frozen=True)
class Plan:
    """Work items of a row-parallel kernel.

    Attributes:
        items: ``[W, 4]`` int32 ``(node, edge start, edge end, slot)``, longest first (a CSR holds at
            most :data:`~sparse_kernels.csr.MAX_EDGES` edges, so positions and tiles fit in 32 bits);
            ``slot = -1`` for an item that covers its whole node.
        splits: ``[R, 3]`` int32 ``(node, first slot, number of slots)`` of the split nodes.
        num_slots: scratch slots needed (``sum`` of the split nodes' item counts).
        chunk: maximum edges per item.
        num_edges, mean_degree, max_degree: degree statistics (for launch configurations).
    """

    items: Tensor
    splits: Tensor
    num_slots: int
    chunk: int
    num_edges: int
    mean_degree: float
    max_degree: int


def default_chunk(num_nodes: int, num_edges: int) -> int:
    """Longest edge range of one work item: about four mean degrees (so that typical rows are
    never split), fewer when the graph has few rows (so that there are enough items to fill a
    GPU), a power of two in ``[64, 1024]``."""
    mean = num_edges / max(num_nodes, 1)
    target = 4.0 * mean
    if num_nodes < 4096:
        target = min(target, num_edges / 4096)
    return int(min(max(pow2(int(target)), 64), 1024))


@contextlib.contextmanager
def chunk_override(chunk: int) -> Iterator[None]:
    """Forces the chunk length of new plans inside the block (tests exercise split-K on tiny graphs)."""
    global _chunk_override
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    previous, _chunk_override = _chunk_override, chunk
    try:
        yield
    finally:
        _chunk_override = previous


def build_plan(ptr: Tensor, chunk: int) -> Plan:
    """Plans the work items of the node offsets ``ptr`` ``[N + 1]`` (see the module docstring)."""
    device = ptr.device
    num_nodes = ptr.numel() - 1
    deg = ptr[1:] - ptr[:-1]
    pieces = torch.clamp((deg + chunk - 1) // chunk, min=1)
    split = pieces > 1
    split_pieces = torch.where(split, pieces, torch.zeros_like(pieces))
    zero = ptr.new_zeros(())
    stats = torch.stack([pieces.sum() if num_nodes else zero, split_pieces.sum() if num_nodes else zero,
                         deg.max() if num_nodes else zero, ptr[-1]])
    num_items, num_slots, max_degree, num_edges = (int(x) for x in stats.tolist())

    node = torch.repeat_interleave(torch.arange(num_nodes, device=device), pieces, output_size=num_items)
    first_item = torch.cumsum(pieces, 0) - pieces
    piece = torch.arange(num_items, device=device) - first_item[node]
    start = ptr[node] + piece * chunk
    end = torch.minimum(start + chunk, ptr[node + 1])
    slot_base = torch.cumsum(split_pieces, 0) - split_pieces
    slot = torch.where(split[node], slot_base[node] + piece, torch.full_like(piece, -1))
    order = torch.argsort(end - start, descending=True, stable=True)
    items = torch.stack([node, start, end, slot], 1)[order].to(torch.int32).contiguous()

    split_nodes = split.nonzero().squeeze(1)
    splits = torch.stack([split_nodes, slot_base[split_nodes], pieces[split_nodes]], 1)
    return Plan(items=items, splits=splits.to(torch.int32).contiguous(), num_slots=num_slots, chunk=chunk,
                num_edges=num_edges, mean_degree=num_edges / max(num_nodes, 1), max_degree=max_degree)


def _version(t: Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # inference tensors keep no version counter
        return 0


def plan_for(ptr: Tensor) -> Plan:
    """The cached :class:`Plan` of ``ptr`` (built on first use, rebuilt if ``ptr`` was modified)."""
    version = _version(ptr)
    key = (_chunk_override, version)
    cache = getattr(ptr, "_sparse_kernels_plans", None)
    if cache is not None and key in cache:
        return cache[key]
    chunk = _chunk_override
    if chunk is None:
        chunk = default_chunk(ptr.numel() - 1, int(ptr[-1]) if ptr.numel() > 1 else 0)
    plan = build_plan(ptr, chunk)
    try:
        if cache is None or any(k[1] != version for k in cache):
            cache = {}
            ptr._sparse_kernels_plans = cache
        cache[key] = plan
    except (AttributeError, RuntimeError):  # a tensor that takes no attributes: plan every call
        pass
    return plan


def launch_config(width: int, heads: int, mean_degree: float) -> dict[str, int]:
    """Tile sizes for a row-parallel kernel on ``[N, heads, width]`` features.

    The table: ``BLOCK_D`` covers the widest feature (next power of two); a program handles
    ``BLOCK_H`` heads so that it gathers whole contiguous node rows (``BLOCK_H * BLOCK_D <= 1024``
    elements); ``BLOCK_E`` edges per tile keep the ``[BLOCK_E, BLOCK_H, BLOCK_D]`` tile at
    ``<= 8192`` fp32 values and do not exceed the mean degree by much (low-degree graphs get
    short tiles, fewer masked lanes); full tiles get 8 warps (ptxas for sm_90: the column pass
    of the backward needs ~220 registers per thread with 4 warps, 128 with 8, no spills).
    One fixed configuration in the interpreter.
    """
    block_d = pow2(width)
    if interpreting():
        return {"BLOCK_E": 8, "BLOCK_H": pow2(heads), "num_warps": 4}
    block_h = min(pow2(heads), max(1, 1024 // block_d))
    block_e = max(4, min(8192 // (block_h * block_d), pow2(int(mean_degree + 0.5)), 64))
    num_warps = 8 if block_e * block_h * block_d >= 8192 else 4
    return {"BLOCK_E": block_e, "BLOCK_H": block_h, "num_warps": num_warps}


def edge_tile(heads: int) -> tuple[int, int]:
    """``(BLOCK_E, BLOCK_H)`` of an edge-parallel kernel on ``[E, heads]`` values (all heads per program)."""
    block_h = pow2(heads)
    if interpreting():
        return 32, block_h
    return max(16, 2048 // block_h), block_h
