r"""Compressed sparse rows by destination, the layout every kernel works on.

An attention graph has edges :math:`j \to i` (source :math:`j`, destination
:math:`i`), given as ``edge_index = [[j_0, j_1, ...], [i_0, i_1, ...]]`` in PyG's
orientation. :class:`CSR` groups the edges by destination:

* ``rowptr`` ``[N_dst + 1]``: the in-edges of destination ``i`` are the CSR positions
  ``rowptr[i] : rowptr[i + 1]``;
* ``col`` ``[E]``: the source of each edge in CSR order;
* ``row`` ``[E]``: the destination of each edge in CSR order (``rowptr`` expanded);
* ``perm`` ``[E]``: CSR position -> the user's edge id, so per-edge tensors given in the
  user's order are read with ``x[perm]`` and written back with ``out[perm] = y``;
  :attr:`CSR.eid` is ``perm``, or ``None`` when the user's order already is the CSR order
  (edges given sorted by destination), so that kernels skip the indirection.

Everything derived from a graph is kept on its CSR (:meth:`CSR.derived`), never in a table keyed by
``id`` or ``data_ptr``. The transpose (grouped by source, used by the backward pass for ``dk`` and ``dv``)
is built lazily once and kept: :meth:`CSR.transpose` gives ``colptr [N_src + 1]``,
``row_t [E]`` (destinations in CSC order) and ``perm_t [E]`` (CSC position -> CSR position).

All index tensors are ``int64`` on the device of the inputs. Construction validates the
``edge_index`` before anything else runs and raises ``TypeError``/``ValueError`` naming
the offending argument. It is also where the engine's size limits are enforced, once for every
kernel: at most :data:`MAX_NODES` nodes per side and ``MAX_EDGES`` edges (the kernels' work
schedules and edge tiles hold node and edge positions in 32 bits; every product of a position with a
size, such as ``edge * H * D``, is formed in 64 bits).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

import torch
from torch import Tensor

__all__ = ["CSR", "CSC", "node_count", "edge_count", "MAX_NODES", "MAX_EDGES", "validate_edge_index", "build_csr",
           "csr_from_sorted_rows", "block_diagonal_full", "offsets", "to_csr_order", "to_user_order"]


#: Largest node count of one side of a graph: the kernels' schedules index nodes with 32 bits.
MAX_NODES = 2 ** 31 - 1
#: Largest edge count of a graph: the kernels' schedules and edge loops hold edge positions in 32 bits, and
#: a tile of up to :math:`2^{16}` edges that starts at the last edge must not wrap past :math:`2^{31}`.
MAX_EDGES = 2 ** 31 - 2 ** 16


def node_count(name: str, value: object) -> int:
    """``value`` as a node count: an integer (Python, NumPy or a one-element integer tensor) in
    ``[0, MAX_NODES]``; anything else is a ``TypeError``/``ValueError`` naming ``name`` (``5.7`` is not
    silently truncated, ``2**40`` is refused before anything is allocated)."""
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if not 0 <= count <= MAX_NODES:
        raise ValueError(f"{name} must be in [0, {MAX_NODES}], got {count}")
    return count


def edge_count(name: str, count: int) -> int:
    """``count`` edges of the graph given as ``name``, if the kernels can index them (at most
    ``MAX_EDGES``); a ``ValueError`` naming ``name`` and the limit otherwise. Not checked while
    ``torch.compile`` traces (a count read from the data cannot be guarded on; the graph-building checks
    run eagerly outside compiled code)."""
    if torch.compiler.is_compiling():
        return count
    if count > MAX_EDGES:
        raise ValueError(f"{name} has {count} edges, more than the {MAX_EDGES} (MAX_EDGES = 2^31 - 2^16) that the "
                         f"kernels index with 32-bit edge positions")
    return count


def validate_edge_index(edge_index: Tensor, num_src_nodes: int, num_dst_nodes: int,
                        name: str = "edge_index") -> None:
    """Checks type, shape, size and range of an ``edge_index`` ``[2, E]``.

    Raises:
        TypeError: ``edge_index`` is not an integer tensor.
        ValueError: wrong shape, more than ``MAX_EDGES`` edges, negative indices, or indices out of range.
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype (int64 or int32), got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{name} must have shape [2, E], got {list(edge_index.shape)}")
    num_src_nodes = node_count("num_src_nodes", num_src_nodes)
    num_dst_nodes = node_count("num_dst_nodes", num_dst_nodes)
    if edge_count(name, edge_index.size(1)) == 0:
        return
    mins = edge_index.amin(dim=1).tolist()
    maxs = edge_index.amax(dim=1).tolist()
    if min(mins) < 0:
        raise ValueError(f"{name} contains negative node indices (min {min(mins)})")
    if maxs[0] >= num_src_nodes:
        raise ValueError(f"{name}[0] (sources) contains index {maxs[0]} but num_src_nodes={num_src_nodes}")
    if maxs[1] >= num_dst_nodes:
        raise ValueError(f"{name}[1] (destinations) contains index {maxs[1]} but num_dst_nodes={num_dst_nodes}")


@dataclass
class CSC:
    """Transpose of a :class:`CSR`: edges grouped by source.

    Attributes:
        colptr: ``[N_src + 1]`` offsets of each source's out-edges.
        row: ``[E]`` destination of each edge in CSC order.
        col: ``[E]`` source of each edge in CSC order (``colptr`` expanded).
        perm: ``[E]`` CSC position -> CSR position.
    """

    colptr: Tensor
    row: Tensor
    col: Tensor
    perm: Tensor

    def to(self, device: torch.device | str) -> "CSC":
        return CSC(self.colptr.to(device), self.row.to(device), self.col.to(device),
                   self.perm.to(device))


@dataclass
class CSR:
    """Edges grouped by destination (see the module docstring for the fields)."""

    rowptr: Tensor
    col: Tensor
    row: Tensor
    perm: Tensor
    num_src_nodes: int
    num_dst_nodes: int
    #: the user's edge order is the CSR order (``perm`` is the identity)
    identity_perm: bool = False
    #: ``[G]`` sizes of the diagonal blocks when the graph is block-diagonal *full* attention (every
    #: node of a block attends to every node of its block, row-major order); ``None`` otherwise
    block_sizes: Optional[Tensor] = None
    #: structures derived from this graph (the transpose, tile layouts, dense-block plans), by name: built
    #: once by :meth:`derived`, mostly through :func:`sparse_kernels.dispatch.prepare`
    _derived: dict = field(default_factory=dict, repr=False)

    def derived(self, key: Hashable, build: Callable[["CSR"], Any]) -> Any:
        """The structure ``key`` derived from this graph, built by ``build(self)`` on first use and kept
        with the graph (it lives and dies with this object: no key can match another graph)."""
        if key not in self._derived:
            self._derived[key] = build(self)
        return self._derived[key]

    @property
    def eid(self) -> Optional[Tensor]:
        """CSR position -> the user's edge id, ``None`` when that is the identity."""
        return None if self.identity_perm else self.perm

    def to_csr_order(self, x: Tensor) -> Tensor:
        """A per-edge tensor ``[E, ...]`` in the user's edge order -> CSR order."""
        return to_csr_order(x, self.eid)

    def to_user_order(self, x: Tensor) -> Tensor:
        """A per-edge tensor ``[E, ...]`` in CSR order -> the user's edge order."""
        return to_user_order(x, self.eid)

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    def degree(self) -> Tensor:
        """In-degree of every destination, ``[N_dst]``."""
        return self.rowptr[1:] - self.rowptr[:-1]

    def transpose(self) -> CSC:
        """The cached transpose (built on first use)."""
        return self.derived("transpose", _build_transpose)

    def to(self, device: torch.device | str) -> "CSR":
        """This graph on ``device`` (with its transpose, if built; other derived structures are rebuilt)."""
        moved = CSR(self.rowptr.to(device), self.col.to(device), self.row.to(device), self.perm.to(device),
                    self.num_src_nodes, self.num_dst_nodes, self.identity_perm,
                    None if self.block_sizes is None else self.block_sizes.to(device))
        if "transpose" in self._derived:
            moved._derived["transpose"] = self._derived["transpose"].to(device)
        return moved


def _build_transpose(csr: CSR) -> CSC:
    order = torch.argsort(csr.col, stable=True)
    return CSC(colptr=offsets(csr.col, csr.num_src_nodes), row=csr.row[order].contiguous(),
               col=csr.col[order].contiguous(), perm=order)


def to_csr_order(x: Tensor, eid: Optional[Tensor]) -> Tensor:
    """A per-edge tensor ``[E, ...]`` in the user's edge order -> CSR order (``eid`` :attr:`CSR.eid`;
    ``None``: the orders agree)."""
    return x if eid is None else x.index_select(0, eid)


def to_user_order(x: Tensor, eid: Optional[Tensor]) -> Tensor:
    """A per-edge tensor ``[E, ...]`` in CSR order -> the user's edge order (inverse of :func:`to_csr_order`)."""
    return x if eid is None else torch.empty_like(x).index_copy_(0, eid, x)


def offsets(index: Tensor, size: int) -> Tensor:
    """``[size + 1]`` offsets of the groups of ``index`` ``[E]`` (values in ``[0, size)``) once
    the edges are sorted by it: ``offsets[i] : offsets[i + 1]`` is group ``i``."""
    counts = torch.zeros(size + 1, dtype=torch.long, device=index.device)
    counts.scatter_add_(0, index + 1, torch.ones_like(index))
    return counts.cumsum(0)


def build_csr(edge_index: Tensor, num_src_nodes: int, num_dst_nodes: int,
              validate: bool = True) -> CSR:
    """Builds the destination-major CSR of ``edge_index`` ``[2, E]``.

    The sort is stable, so edges of one destination keep the user's relative order. Edges that
    are already sorted by destination are not sorted again (and :attr:`CSR.eid` is ``None``; not
    checked while ``torch.compile`` traces, where the check would be data-dependent).
    """
    if validate:
        validate_edge_index(edge_index, num_src_nodes, num_dst_nodes)
    else:
        edge_count("edge_index", edge_index.size(1))
    edge_index = edge_index.long()
    src, dst = edge_index[0], edge_index[1]
    if not torch.compiler.is_compiling() and (dst.numel() < 2 or bool((dst[1:] >= dst[:-1]).all())):
        return csr_from_sorted_rows(dst, src, num_src_nodes, num_dst_nodes)
    perm = torch.argsort(dst, stable=True)
    row = dst[perm]
    return CSR(rowptr=offsets(row, num_dst_nodes), col=src.index_select(0, perm),
               row=row.contiguous(), perm=perm, num_src_nodes=num_src_nodes,
               num_dst_nodes=num_dst_nodes)


def csr_from_sorted_rows(row: Tensor, col: Tensor, num_src_nodes: int,
                         num_dst_nodes: int) -> CSR:
    """A CSR whose edges are already grouped by destination (``row`` non-decreasing).

    The user's edge order is the CSR order, so ``perm`` is the identity.
    """
    edge_count("col", col.numel())
    row, col = row.long().contiguous(), col.long().contiguous()
    return CSR(rowptr=offsets(row, num_dst_nodes), col=col, row=row,
               perm=torch.arange(col.numel(), device=col.device), num_src_nodes=num_src_nodes,
               num_dst_nodes=num_dst_nodes, identity_perm=True)


def block_diagonal_full(sizes: Tensor, num_nodes: Optional[int] = None) -> CSR:
    r"""Full attention within consecutive node blocks of ``sizes`` ``[G]``: node ``i`` of block ``g``
    attends to every node of block ``g`` (itself included). :math:`\sum_g n_g^2` edges, built
    directly in CSR order (rows ascending, sources ascending within a row); the CSR records
    ``block_sizes`` so that the engine may run it as dense blocks. ``num_nodes`` (``sizes.sum()``)
    saves a device synchronisation when known."""
    sizes = sizes.long()
    n = num_nodes if num_nodes is not None else (int(sizes.sum()) if sizes.numel() else 0)
    device = sizes.device
    block = torch.repeat_interleave(torch.arange(sizes.numel(), device=device), sizes, output_size=n)
    starts = sizes.cumsum(0) - sizes
    row_len = sizes[block]                                   # every node attends to its whole block
    num_edges = edge_count("sizes", int((sizes * sizes).sum()) if sizes.numel() else 0)   # before allocating them
    row = torch.repeat_interleave(torch.arange(n, device=device), row_len, output_size=num_edges)
    rowptr_start = row_len.cumsum(0) - row_len
    col = starts[block[row]] + (torch.arange(num_edges, device=device) - rowptr_start[row])
    csr = csr_from_sorted_rows(row, col, n, n)
    csr.block_sizes = sizes
    return csr
