r"""Block-sparse rows (BSR): the tile layout of a graph with dense blocks.

The attention mask of a graph (``[N_dst, N_src]``, entry ``(i, j)`` set for an edge
:math:`j \to i`) is cut into tiles of ``block_m x block_n``. A tile is

* **empty** — no edge: never visited;
* **full** — every one of its ``block_m * block_n`` entries is an edge (and it lies wholly
  inside the matrix): the kernel runs an unmasked tensor-core ``tl.dot``;
* **partial** — anything else: the kernel applies a per-element mask stored for that tile.

:class:`BSR` holds the non-empty tiles grouped by row block (``block_rowptr``,
``block_col``), ``mask_index`` (``-1`` for a full tile, else the tile's slot in ``masks``)
and ``masks`` ``[P, block_m, block_n]`` (``uint8``) for the ``P`` partial tiles. Within a
row block the full tiles come first (``block_split`` marks where the partial ones start), so
a kernel runs two loops, the first with no mask at all. The transpose (tiles grouped by
column block, full first; ``block_colptr``, ``block_split_t``, ``tile_row_t``,
``mask_index_t``) serves the backward column pass for ``dk``, ``dv`` without atomics.
Sliding windows, blocks, causal masks and global tokens have almost only full tiles;
irregular graphs have almost only sparse partial tiles, which :func:`select_bsr` detects
from the tile occupancy so that :func:`graphattn.graph_attention` keeps the CSR kernels for
them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .csr import CSR, offsets

__all__ = ["BSR", "bsr_from_csr", "select_bsr", "DEFAULT_BLOCK", "MIN_FILL"]

#: Tile shape used by :func:`select_bsr` when none is given.
DEFAULT_BLOCK = (64, 64)
#: Minimal fraction of the visited tiles' entries that must be edges for the BSR path to pay.
MIN_FILL = 0.3


@dataclass
class BSR:
    """Tile layout of a graph (see the module docstring).

    Attributes:
        block_m, block_n: tile shape (rows = destinations, columns = sources).
        num_dst_nodes, num_src_nodes: the matrix shape.
        block_rowptr: ``[ceil(N_dst / block_m) + 1]`` offsets of each row block's tiles.
        block_split: ``[ceil(N_dst / block_m)]`` first partial tile of each row block.
        block_col: ``[T]`` source-block index of each tile (full tiles first, then partial,
            each ascending).
        mask_index: ``[T]`` int32, ``-1`` for a full tile, else the tile's slot in ``masks``.
        masks: ``[P, block_m, block_n]`` uint8 per-element masks of the partial tiles.
        block_colptr, block_split_t, tile_row_t, mask_index_t: the same tiles grouped by
            source block (``[ceil(N_src / block_n) + 1]``, ``[ceil(N_src / block_n)]``, ``[T]``, ``[T]``).
        num_edges: edges of the graph (each counted once).
        has_duplicates: the graph repeats an edge (the BSR then is not equivalent to the CSR).
    """

    block_m: int
    block_n: int
    num_dst_nodes: int
    num_src_nodes: int
    block_rowptr: Tensor
    block_split: Tensor
    block_col: Tensor
    mask_index: Tensor
    masks: Tensor
    block_colptr: Tensor
    block_split_t: Tensor
    tile_row_t: Tensor
    mask_index_t: Tensor
    num_edges: int
    has_duplicates: bool = False

    @property
    def num_tiles(self) -> int:
        return self.block_col.numel()

    @property
    def num_full_tiles(self) -> int:
        return self.num_tiles - self.masks.size(0)

    @property
    def fill(self) -> float:
        """Edges over the entries of the visited tiles (1.0 when every tile is full)."""
        return self.num_edges / max(1, self.num_tiles * self.block_m * self.block_n)

    @property
    def full_fraction(self) -> float:
        """Fraction of the edges that lie in full tiles."""
        return self.num_full_tiles * self.block_m * self.block_n / max(1, self.num_edges)

    def to_dense(self) -> Tensor:
        """``[N_dst, N_src]`` boolean mask rebuilt from the tiles (for tests)."""
        bm, bn = self.block_m, self.block_n
        nrb = self.block_rowptr.numel() - 1
        ncb = -(-self.num_src_nodes // bn)
        dense = torch.zeros(nrb * bm, ncb * bn, dtype=torch.bool, device=self.block_col.device)
        row_block = torch.repeat_interleave(torch.arange(nrb, device=dense.device),
                                            self.block_rowptr[1:] - self.block_rowptr[:-1])
        for t in range(self.num_tiles):
            r, c, m = int(row_block[t]), int(self.block_col[t]), int(self.mask_index[t])
            dense[r * bm:(r + 1) * bm, c * bn:(c + 1) * bn] = True if m < 0 else self.masks[m].bool()
        return dense[:self.num_dst_nodes, :self.num_src_nodes]


def bsr_from_csr(csr: CSR, block_m: int = 64, block_n: int = 64) -> BSR:
    r"""Builds the tile layout of ``csr`` with one sort of the edges.

    Each edge gets the key ``tile * block_m * block_n + offset_in_tile`` with
    ``tile = (i // block_m) * ceil(N_src / block_n) + j // block_n``; the sorted unique keys
    give the tiles (in row-block-major order), their edge counts, duplicates and the
    partial-tile masks. Cost :math:`O(E \log E)`, memory :math:`O(E + P\,b_m b_n)`.
    """
    for name, b in (("block_m", block_m), ("block_n", block_n)):
        if not isinstance(b, int) or b < 1:
            raise ValueError(f"{name} must be a positive int, got {b!r}")
    device = csr.device
    n_dst, n_src = csr.num_dst_nodes, csr.num_src_nodes
    nrb, ncb = -(-n_dst // block_m), -(-n_src // block_n)
    area = block_m * block_n
    row, col = csr.row, csr.col
    tile = (row // block_m) * ncb + col // block_n
    keys = tile * area + (row % block_m) * block_n + col % block_n
    keys = torch.unique(keys, sorted=True)
    has_duplicates = keys.numel() != row.numel()
    tile_of_edge = keys // area
    tiles, counts = torch.unique_consecutive(tile_of_edge, return_counts=True)
    tile_row, tile_col = tiles // ncb, tiles % ncb
    rows_in = torch.clamp(n_dst - tile_row * block_m, max=block_m)
    cols_in = torch.clamp(n_src - tile_col * block_n, max=block_n)
    full = (counts == area) & (rows_in == block_m) & (cols_in == block_n)
    mask_index = torch.cumsum((~full).to(torch.int64), 0) - 1
    mask_index = torch.where(full, torch.full_like(mask_index, -1), mask_index)
    masks = torch.zeros(int((~full).sum()), block_m, block_n, dtype=torch.uint8, device=device)
    slot = mask_index[torch.repeat_interleave(torch.arange(tiles.numel(), device=device), counts)]
    partial = slot >= 0
    local = keys[partial] % area
    masks.view(-1, area)[slot[partial], local] = 1
    rowptr, split, order = _group_full_first(tile_row, tile_col, full, nrb, ncb)
    colptr, split_t, order_t = _group_full_first(tile_col, tile_row, full, ncb, nrb)
    mask_index = mask_index.to(torch.int32)
    return BSR(block_m, block_n, n_dst, n_src, rowptr, split, tile_col[order].contiguous(),
               mask_index[order].contiguous(), masks, colptr, split_t, tile_row[order_t].contiguous(),
               mask_index[order_t].contiguous(), int(keys.numel()), has_duplicates)


def _group_full_first(group: Tensor, other: Tensor, full: Tensor, num_groups: int,
                      num_other: int) -> tuple[Tensor, Tensor, Tensor]:
    """Orders tiles by ``(group, partial, other)``: ``(ptr [G + 1], split [G], order [T])``."""
    partial = (~full).long()
    order = torch.argsort((group * 2 + partial) * num_other + other)
    ptr = offsets(group, num_groups)
    num_full = torch.zeros(num_groups, dtype=torch.long, device=group.device)
    num_full.scatter_add_(0, group, full.long())
    return ptr, ptr[:-1] + num_full, order


def select_bsr(csr: CSR, block: Optional[tuple[int, int]] = None,
               min_fill: float = MIN_FILL) -> Optional[BSR]:
    """The BSR layout of ``csr`` when its tile occupancy makes the block-sparse path pay, else ``None``.

    The BSR path is chosen when the graph has no duplicate edges and at least ``min_fill`` of
    the entries of its non-empty tiles are edges (then at most ``1 / min_fill`` times the
    edge work is done, on tensor cores instead of gathers). The answer is kept on the CSR
    (:meth:`~sparse_kernels.csr.CSR.derived`), so a graph reused across layers and steps is analysed once.
    """
    block = DEFAULT_BLOCK if block is None else tuple(block)

    def build(graph: CSR) -> Optional[BSR]:
        layout = bsr_from_csr(graph, *block)
        ok = graph.num_edges > 0 and not layout.has_duplicates and layout.fill >= min_fill
        return layout if ok else None

    return csr.derived(("bsr", block, min_fill), build)
