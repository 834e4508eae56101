r"""Static sparse-attention patterns as attention graphs over token positions.

A sequence of :math:`n` tokens is a graph over positions: an edge :math:`j \to i` means
query :math:`i` attends key :math:`j`. Every pattern here is a small hashable *spec*
(:class:`Pattern`) with two views that are defined independently of each other:

* :meth:`Pattern.mask` — the elementwise rule :math:`M(i, j, n)` on index tensors (the
  ``mask_mod`` of FlexAttention, the dense ``attn_mask`` of SDPA);
* :meth:`Pattern.graph` — the :class:`SeqGraph` (an :class:`~graphattn.AttentionGraph`)
  whose edges are built vectorised from per-row index ranges, directly in CSR order,
  without an :math:`n \times n` matrix, and cached per ``(pattern, n, device)``.

Specs compose with ``|`` (union) and ``&`` (intersection), and
:meth:`Pattern.batch` / :func:`batch` put sequences of different lengths into one
block-diagonal graph (no padding). The functional constructors (:func:`sliding_window`,
:func:`causal`, ...) take ``n`` and return the cached graph; the classes
(:class:`SlidingWindow`, :class:`Causal`, ...) are the specs, which models take so that
one pattern serves every sequence length.

Example::

    g = sliding_window(16384, 512, causal=True) | global_tokens(16384, 4, causal=True)
    out = graph_attention(q, k, v, g)          # q, k, v: [16384, H, D]
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ..graph import AttentionGraph

__all__ = ["SeqGraph", "Pattern", "Full", "Causal", "SlidingWindow", "Dilated", "Blocks", "Strided",
           "GlobalTokens", "RandomKeys", "UnionPattern", "IntersectionPattern", "full", "causal",
           "sliding_window", "dilated", "blocks", "strided", "global_tokens", "random", "batch",
           "graph_union", "graph_intersection", "expand_segments", "clear_cache"]

DeviceLike = Union[torch.device, str, None]

#: Maximum number of cached graphs (least recently used are dropped).
CACHE_SIZE = 64
#: Maximum total edges held by the cache (a 16k-token causal graph alone has 134M).
CACHE_MAX_EDGES = 1 << 28
#: Largest full or causal graph built as edges (16.8M edges, 268 MB of int64 indices): beyond it a
#: :math:`O(n^2)` pattern is refused with its size instead of being materialised
#: (:class:`~graphattn.seq.SeqGraphAttention` runs full and causal attention through SDPA instead).
MAX_DENSE_EDGES = 1 << 24
_CACHE: "OrderedDict[tuple, SeqGraph]" = OrderedDict()


def clear_cache() -> None:
    """Drops every cached pattern graph."""
    _CACHE.clear()


def _cached(key: tuple, build: Callable[[], "SeqGraph"]) -> "SeqGraph":
    graph = _CACHE.get(key)
    if graph is None:
        graph = build()
        _CACHE[key] = graph
        while len(_CACHE) > 1 and (len(_CACHE) > CACHE_SIZE or
                                   sum(g.num_edges for g in _CACHE.values()) > CACHE_MAX_EDGES):
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return graph


def _device(device: DeviceLike) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


# --------------------------------------------------------------------------- the graph type
class SeqGraph(AttentionGraph):
    r"""An :class:`~graphattn.AttentionGraph` over the positions of one or more sequences.

    Edges are stored in CSR order (grouped by query, keys ascending), so the user's edge
    order is the CSR order. Besides the graph it records

    * ``seq_lengths``: the lengths of the sequences laid end to end (block-diagonal batch);
    * ``pattern``: the :class:`Pattern` it was built from (``None`` for content-based graphs),
      which gives :meth:`mask_mod` for FlexAttention and an independent dense mask.
    """

    def __init__(self, row: Tensor, col: Tensor, seq_lengths: Sequence[int],
                 pattern: Optional["Pattern"] = None):
        n = int(sum(seq_lengths))
        super().__init__(torch.stack([col.long(), row.long()]), n, n, validate=False, sorted_by_dst=True)
        self.seq_lengths = tuple(int(s) for s in seq_lengths)
        self.pattern = pattern

    @classmethod
    def from_keys(cls, keys: Tensor, seq_lengths: Sequence[int],
                  pattern: Optional["Pattern"] = None) -> "SeqGraph":
        """From sorted unique edge keys ``row * n + col``."""
        n = int(sum(seq_lengths))
        return cls(keys // max(n, 1), keys % max(n, 1), seq_lengths, pattern)

    @property
    def keys(self) -> Tensor:
        """``[E]`` sorted edge keys ``row * n + col`` (for set operations; the edges are sorted by row)."""
        col, row = self.edge_index
        return row * self.num_dst_nodes + col

    def sequence_ids(self) -> Tensor:
        """``[n]`` index of the sequence every position belongs to."""
        lengths = torch.tensor(self.seq_lengths, dtype=torch.long, device=self.device)
        return torch.repeat_interleave(torch.arange(len(lengths), device=self.device), lengths)

    def mask_mod(self) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
        """``mask_mod(b, h, q_idx, kv_idx)`` for :func:`torch.nn.attention.flex_attention.create_block_mask`.

        Evaluates the pattern's rule (per sequence for a batch); content-based graphs fall back
        to a lookup in the dense mask.
        """
        if self.pattern is None or len(self.seq_lengths) == 0:
            table = self.to_dense()
            return lambda b, h, q_idx, kv_idx: table[q_idx, kv_idx]
        pattern = self.pattern
        if len(self.seq_lengths) == 1:
            n = self.seq_lengths[0]
            return lambda b, h, q_idx, kv_idx: pattern.mask(q_idx, kv_idx, n)
        seq = self.sequence_ids()
        lengths = torch.tensor(self.seq_lengths, dtype=torch.long, device=self.device)
        starts = lengths.cumsum(0) - lengths

        def mask_mod(b, h, q_idx, kv_idx):
            sq, skv = seq[q_idx], seq[kv_idx]
            local = pattern.mask(q_idx - starts[sq], kv_idx - starts[sq], lengths[sq])
            return (sq == skv) & local
        return mask_mod

    def dense_mask(self) -> Tensor:
        """``[n, n]`` boolean mask from the pattern's rule (independent of the edges)."""
        idx = torch.arange(self.num_dst_nodes, device=self.device)
        return self.mask_mod()(0, 0, idx[:, None], idx[None, :])

    def to(self, device: DeviceLike) -> "SeqGraph":
        col, row = self.edge_index
        return SeqGraph(row.to(device), col.to(device), self.seq_lengths, self.pattern)

    def __or__(self, other: "SeqGraph") -> "SeqGraph":
        return graph_union(self, other)

    def __and__(self, other: "SeqGraph") -> "SeqGraph":
        return graph_intersection(self, other)

    def __repr__(self) -> str:
        name = "content-based" if self.pattern is None else repr(self.pattern)
        return (f"SeqGraph({name}, seq_lengths={list(self.seq_lengths)[:4]}"
                f"{'...' if len(self.seq_lengths) > 4 else ''}, num_edges={self.num_edges})")


def _check_same_layout(graphs: Sequence[SeqGraph]) -> None:
    for g in graphs:
        if not isinstance(g, SeqGraph):
            raise TypeError(f"expected SeqGraph operands, got {type(g).__name__}")
    first = graphs[0]
    for g in graphs[1:]:
        if g.seq_lengths != first.seq_lengths:
            raise ValueError(f"graphs must cover the same sequences, got lengths {first.seq_lengths} "
                             f"and {g.seq_lengths}")
        if g.device != first.device:
            raise ValueError(f"graphs must be on the same device, got {first.device} and {g.device}")


def _combined_pattern(graphs: Sequence[SeqGraph], cls: type) -> Optional["Pattern"]:
    if any(g.pattern is None for g in graphs):
        return None
    return cls(tuple(g.pattern for g in graphs))


def graph_union(*graphs: SeqGraph) -> SeqGraph:
    """Union of the edge sets of graphs over the same sequences (``g1 | g2``)."""
    _check_same_layout(graphs)
    keys = torch.unique(torch.cat([g.keys for g in graphs]), sorted=True)
    return SeqGraph.from_keys(keys, graphs[0].seq_lengths, _combined_pattern(graphs, UnionPattern))


def graph_intersection(*graphs: SeqGraph) -> SeqGraph:
    """Intersection of the edge sets of graphs over the same sequences (``g1 & g2``)."""
    _check_same_layout(graphs)
    keys = graphs[0].keys
    for g in graphs[1:]:
        keys = keys[torch.isin(keys, g.keys)]
    return SeqGraph.from_keys(keys, graphs[0].seq_lengths,
                              _combined_pattern(graphs, IntersectionPattern))


def batch(graphs: Sequence[SeqGraph]) -> SeqGraph:
    r"""Sequences of different lengths as one block-diagonal graph (no padding).

    Positions are laid end to end: sequence :math:`s` occupies
    :math:`[\text{start}_s, \text{start}_s + n_s)`. The result keeps the pattern when all
    graphs share one.
    """
    if len(graphs) == 0:
        raise ValueError("graphs must be a non-empty sequence of SeqGraph")
    for g in graphs:
        if not isinstance(g, SeqGraph):
            raise TypeError(f"graphs must be SeqGraph objects, got {type(g).__name__}")
    device = graphs[0].device
    rows, cols, lengths, offset = [], [], [], 0
    for g in graphs:
        col, row = g.edge_index
        rows.append(row.to(device) + offset)
        cols.append(col.to(device) + offset)
        lengths.extend(g.seq_lengths)
        offset += g.num_dst_nodes
    patterns = {g.pattern for g in graphs}
    pattern = patterns.pop() if len(patterns) == 1 else None
    return SeqGraph(torch.cat(rows), torch.cat(cols), lengths, pattern)


# --------------------------------------------------------------------------- vectorised edge building
def expand_segments(seg_row: Tensor, seg_start: Tensor, seg_len: Tensor,
                    seg_step: Union[Tensor, int] = 1) -> tuple[Tensor, Tensor]:
    r"""Expands index ranges into edges, vectorised.

    Segment :math:`s` gives the edges :math:`(\text{row}_s,\ \text{start}_s + t\,\text{step}_s)`
    for :math:`t = 0, \dots, \text{len}_s - 1`. With segments sorted by row (and by start
    within a row, non-overlapping) the edges come out in CSR order.

    Returns:
        ``(row [E], col [E])``.
    """
    seg_len = seg_len.clamp_min(0)
    seg_id = torch.repeat_interleave(torch.arange(seg_len.numel(), device=seg_len.device), seg_len)
    first = seg_len.cumsum(0) - seg_len
    offset = torch.arange(seg_id.numel(), device=seg_len.device) - first[seg_id]
    step = seg_step[seg_id] if isinstance(seg_step, Tensor) else seg_step
    return seg_row[seg_id], seg_start[seg_id] + offset * step


def _one_range_per_row(n: int, device: torch.device, start: Tensor, length: Tensor,
                       step: Union[Tensor, int] = 1) -> tuple[Tensor, Tensor]:
    return expand_segments(torch.arange(n, device=device), start, length, step)


# --------------------------------------------------------------------------- pattern specs
class Pattern:
    """Base class of static patterns: a hashable spec with a rule and an edge builder."""

    def mask(self, q_idx: Tensor, kv_idx: Tensor, n: Union[int, Tensor]) -> Tensor:
        """Boolean rule :math:`M(i, j, n)` on broadcastable index tensors."""
        raise NotImplementedError

    def edges(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(row, col)`` in CSR order (rows ascending, keys ascending, no duplicates)."""
        raise NotImplementedError

    def graph(self, n: int, device: DeviceLike = None) -> SeqGraph:
        """The cached :class:`SeqGraph` of this pattern over ``n`` positions."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        device = _device(device)
        return _cached((self, n, str(device)), lambda: self._build(n, device))

    def _build(self, n: int, device: torch.device) -> SeqGraph:
        row, col = self.edges(n, device)
        return SeqGraph(row, col, [n], self)

    def batch(self, lengths: Sequence[int], device: DeviceLike = None) -> SeqGraph:
        """Block-diagonal graph of this pattern over sequences of the given lengths (cached)."""
        lengths = tuple(int(s) for s in lengths)
        if any(s < 0 for s in lengths) or not lengths:
            raise ValueError(f"lengths must be a non-empty list of non-negative ints, got {lengths}")
        device = _device(device)
        return _cached((self, lengths, str(device)),
                       lambda: batch([self.graph(s, device) for s in lengths]))

    def __or__(self, other: "Pattern") -> "Pattern":
        return UnionPattern((self, other))

    def __and__(self, other: "Pattern") -> "Pattern":
        return IntersectionPattern((self, other))


def _check_dense_size(pattern: "Pattern", n: int, num_edges: int) -> None:
    if num_edges > MAX_DENSE_EDGES:
        raise ValueError(f"{pattern!r} over {n:,} positions would build {num_edges:,} edges "
                         f"({16 * num_edges / 2 ** 30:.1f} GiB of indices, more than MAX_DENSE_EDGES = "
                         f"{MAX_DENSE_EDGES:,}); run full or causal attention through SDPA (SeqGraphAttention does "
                         f"so), use a sparse pattern, or raise graphattn.seq.patterns.MAX_DENSE_EDGES")


def _check_positive(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class Full(Pattern):
    """Every query attends every key: :math:`M = 1`."""

    def mask(self, q_idx, kv_idx, n):
        return (q_idx >= 0) & (kv_idx >= 0)

    def edges(self, n, device):
        _check_dense_size(self, n, n * n)
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        return _one_range_per_row(n, device, zeros, torch.full_like(zeros, n))


@dataclass(frozen=True)
class Causal(Pattern):
    """Causal attention: :math:`M = [j \\le i]`."""

    def mask(self, q_idx, kv_idx, n):
        return kv_idx <= q_idx

    def edges(self, n, device):
        _check_dense_size(self, n, n * (n + 1) // 2)
        i = torch.arange(n, device=device)
        return _one_range_per_row(n, device, torch.zeros_like(i), i + 1)


@dataclass(frozen=True)
class SlidingWindow(Pattern):
    r"""Local window: :math:`|i - j| \le w` (causal: :math:`0 \le i - j \le w`).

    ``window`` is the one-sided width: a query sees :math:`2w + 1` keys (:math:`w + 1` causal).
    """

    window: int
    causal: bool = False

    def __post_init__(self):
        _check_positive("window", self.window, 0)

    def mask(self, q_idx, kv_idx, n):
        d = q_idx - kv_idx
        return (d <= self.window) & (d >= (0 if self.causal else -self.window))

    def edges(self, n, device):
        i = torch.arange(n, device=device)
        start = (i - self.window).clamp_min(0)
        end = i if self.causal else (i + self.window).clamp_max(n - 1)
        return _one_range_per_row(n, device, start, end - start + 1)


@dataclass(frozen=True)
class Dilated(Pattern):
    r"""Dilated window: :math:`j = i - d\,t` for :math:`|t| \le w` (causal :math:`0 \le t \le w`)."""

    window: int
    dilation: int
    causal: bool = False

    def __post_init__(self):
        _check_positive("window", self.window, 0)
        _check_positive("dilation", self.dilation)

    def mask(self, q_idx, kv_idx, n):
        d = q_idx - kv_idx
        lo = 0 if self.causal else -self.window * self.dilation
        return (d % self.dilation == 0) & (d <= self.window * self.dilation) & (d >= lo)

    def edges(self, n, device):
        i = torch.arange(n, device=device)
        back = torch.clamp(i // self.dilation, max=self.window)
        ahead = torch.zeros_like(i) if self.causal else \
            torch.clamp((n - 1 - i) // self.dilation, max=self.window)
        return _one_range_per_row(n, device, i - back * self.dilation, back + ahead + 1, self.dilation)


@dataclass(frozen=True)
class Blocks(Pattern):
    r"""Block-diagonal local attention: :math:`\lfloor i/b \rfloor = \lfloor j/b \rfloor`
    (causal: and :math:`j \le i`)."""

    block_size: int
    causal: bool = False

    def __post_init__(self):
        _check_positive("block_size", self.block_size)

    def mask(self, q_idx, kv_idx, n):
        same = torch.div(q_idx, self.block_size, rounding_mode="floor") == \
            torch.div(kv_idx, self.block_size, rounding_mode="floor")
        return same & (kv_idx <= q_idx) if self.causal else same

    def edges(self, n, device):
        i = torch.arange(n, device=device)
        start = i // self.block_size * self.block_size
        end = i if self.causal else (start + self.block_size - 1).clamp_max(n - 1)
        return _one_range_per_row(n, device, start, end - start + 1)


@dataclass(frozen=True)
class Strided(Pattern):
    r"""Strided attention (Sparse Transformer's second head): :math:`(i - j) \bmod s = 0`
    (causal: and :math:`j \le i`)."""

    stride: int
    causal: bool = False

    def __post_init__(self):
        _check_positive("stride", self.stride)

    def mask(self, q_idx, kv_idx, n):
        ok = (q_idx - kv_idx) % self.stride == 0
        return ok & (kv_idx <= q_idx) if self.causal else ok

    def edges(self, n, device):
        i = torch.arange(n, device=device)
        first = i % self.stride
        last = i if self.causal else first + (n - 1 - first) // self.stride * self.stride
        return _one_range_per_row(n, device, first, (last - first) // self.stride + 1, self.stride)


@dataclass(frozen=True)
class GlobalTokens(Pattern):
    r"""Global (sink / landmark) tokens :math:`G` that attend and are attended everywhere:
    :math:`M = [i \in G \lor j \in G]` (causal: and :math:`j \le i`).

    ``tokens`` is the number of leading positions :math:`G = \{0, \dots, g-1\}` (attention
    sinks), or an explicit tuple of positions. Positions beyond ``n`` are ignored.
    """

    tokens: Union[int, tuple] = 1
    causal: bool = False

    def __post_init__(self):
        if isinstance(self.tokens, int):
            _check_positive("tokens", self.tokens, 0)
        else:
            tokens = tuple(sorted({int(t) for t in self.tokens}))
            if any(t < 0 for t in tokens):
                raise ValueError(f"tokens must be non-negative positions, got {self.tokens}")
            object.__setattr__(self, "tokens", tokens)

    def positions(self, n: int, device: torch.device) -> Tensor:
        if isinstance(self.tokens, int):
            return torch.arange(min(self.tokens, n), device=device)
        t = torch.tensor(self.tokens, dtype=torch.long, device=device)
        return t[t < n]

    def _is_global(self, idx: Tensor) -> Tensor:
        if isinstance(self.tokens, int):
            return idx < self.tokens
        return torch.isin(idx, torch.tensor(self.tokens, dtype=torch.long, device=idx.device))

    def mask(self, q_idx, kv_idx, n):
        ok = self._is_global(q_idx) | self._is_global(kv_idx)
        return ok & (kv_idx <= q_idx) if self.causal else ok

    def edges(self, n, device):
        g = self.positions(n, device)
        i = torch.arange(n, device=device)
        is_global = torch.zeros(n, dtype=torch.bool, device=device)
        is_global[g] = True
        # global rows attend everything (up to i when causal); other rows attend the globals
        rows_g = i[is_global]
        row_a, col_a = expand_segments(rows_g, torch.zeros_like(rows_g), rows_g + 1 if self.causal
                                       else torch.full_like(rows_g, n))
        rows_o = i[~is_global]
        row_b = rows_o.repeat_interleave(g.numel())
        col_b = g.repeat(rows_o.numel())
        if self.causal:
            keep = col_b <= row_b
            row_b, col_b = row_b[keep], col_b[keep]
        keys = torch.cat([row_a * n + col_a, row_b * n + col_b]).sort().values
        return keys // max(n, 1), keys % max(n, 1)


@dataclass(frozen=True)
class RandomKeys(Pattern):
    r"""BigBird's random attention: every query attends ``num_keys`` keys drawn uniformly
    (causal: from :math:`j \le i`), reproducibly from ``seed`` (drawn on the CPU, so the
    same on every device). Duplicate draws collapse, so a row may get fewer keys.
    """

    num_keys: int
    seed: int = 0
    causal: bool = False

    def __post_init__(self):
        _check_positive("num_keys", self.num_keys)

    def _keys(self, n: int) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        u = torch.rand(n, self.num_keys, generator=gen, dtype=torch.float64)
        i = torch.arange(n).unsqueeze(1)
        width = (i + 1) if self.causal else torch.full_like(i, n)
        col = torch.clamp((u * width).long(), max=n - 1)
        return torch.unique(i * n + col)

    def mask(self, q_idx, kv_idx, n):
        if not isinstance(n, Tensor):
            return torch.isin(q_idx * n + kv_idx, self._keys(int(n)).to(q_idx.device))
        q_idx, kv_idx, n = torch.broadcast_tensors(q_idx, kv_idx, n)
        out = torch.zeros(q_idx.shape, dtype=torch.bool, device=q_idx.device)
        for length in torch.unique(n).tolist():   # one table per distinct sequence length
            sel = n == length
            out[sel] = self.mask(q_idx[sel], kv_idx[sel], int(length))
        return out

    def edges(self, n, device):
        keys = self._keys(n).to(device)
        return keys // max(n, 1), keys % max(n, 1)


@dataclass(frozen=True)
class UnionPattern(Pattern):
    """Union of patterns (``p1 | p2``)."""

    parts: tuple

    def mask(self, q_idx, kv_idx, n):
        out = self.parts[0].mask(q_idx, kv_idx, n)
        for p in self.parts[1:]:
            out = out | p.mask(q_idx, kv_idx, n)
        return out

    def edges(self, n, device):
        keys = torch.unique(torch.cat([p.graph(n, device).keys for p in self.parts]), sorted=True)
        return keys // max(n, 1), keys % max(n, 1)


@dataclass(frozen=True)
class IntersectionPattern(Pattern):
    """Intersection of patterns (``p1 & p2``)."""

    parts: tuple

    def mask(self, q_idx, kv_idx, n):
        out = self.parts[0].mask(q_idx, kv_idx, n)
        for p in self.parts[1:]:
            out = out & p.mask(q_idx, kv_idx, n)
        return out

    def edges(self, n, device):
        keys = self.parts[0].graph(n, device).keys
        for p in self.parts[1:]:
            keys = keys[torch.isin(keys, p.graph(n, device).keys)]
        return keys // max(n, 1), keys % max(n, 1)


# --------------------------------------------------------------------------- functional constructors
def full(n: int, device: DeviceLike = None) -> SeqGraph:
    """Full attention over ``n`` positions."""
    return Full().graph(n, device)


def causal(n: int, device: DeviceLike = None) -> SeqGraph:
    """Causal attention over ``n`` positions."""
    return Causal().graph(n, device)


def sliding_window(n: int, window: int, causal: bool = False, device: DeviceLike = None) -> SeqGraph:
    r"""Local window :math:`|i - j| \le` ``window`` (causal: :math:`0 \le i - j \le` ``window``)."""
    return SlidingWindow(window, causal).graph(n, device)


def dilated(n: int, window: int, dilation: int, causal: bool = False,
            device: DeviceLike = None) -> SeqGraph:
    """Dilated window: keys :math:`i - d\\,t`, :math:`|t| \\le` ``window``."""
    return Dilated(window, dilation, causal).graph(n, device)


def blocks(n: int, block_size: int, causal: bool = False, device: DeviceLike = None) -> SeqGraph:
    """Attention within consecutive blocks of ``block_size`` positions."""
    return Blocks(block_size, causal).graph(n, device)


def strided(n: int, stride: int, causal: bool = False, device: DeviceLike = None) -> SeqGraph:
    """Keys at multiples of ``stride`` away from the query."""
    return Strided(stride, causal).graph(n, device)


def global_tokens(n: int, tokens: Union[int, Sequence[int]] = 1, causal: bool = False,
                  device: DeviceLike = None) -> SeqGraph:
    """Global / sink tokens (the first ``tokens`` positions, or the given positions)."""
    return GlobalTokens(tokens if isinstance(tokens, int) else tuple(tokens), causal).graph(n, device)


def random(n: int, num_keys: int, seed: int = 0, causal: bool = False,
           device: DeviceLike = None) -> SeqGraph:
    """BigBird random keys, ``num_keys`` per query, seeded."""
    return RandomKeys(num_keys, seed, causal).graph(n, device)
