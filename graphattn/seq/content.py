r"""Content-based attention patterns, built per input from the queries and keys.

Each builder returns a :class:`~graphattn.seq.patterns.SeqGraph` chosen without gradients;
attention then recomputes the scores on the kept edges (:func:`graphattn.graph_attention`),
so gradients flow through every kept score, exactly as through dense attention masked to
the same edges. One graph serves all heads: routing decisions use the concatenation of the
heads, :math:`\langle q_i, k_j\rangle = \sum_h \langle q_{i,h}, k_{j,h}\rangle`.

* :func:`topk_graph` — each query keeps its :math:`k` highest-scoring keys (blockwise over
  queries: :math:`O(b \cdot n)` memory, never :math:`n \times n`);
* :func:`routing_graph` / :class:`KMeansRouting` — Routing Transformer: queries and keys are
  assigned to the nearest of :math:`C` shared, EMA-updated k-means centroids (on the unit
  sphere) and a query attends the keys of its cluster;
* :func:`region_routing_graph` — BiFormer: region-to-region top-k on region means, then
  token attention inside the routed regions.

All accept ``seq_lengths`` for a block-diagonal batch of sequences laid end to end.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .patterns import Pattern, SeqGraph, batch, expand_segments, graph_union

__all__ = ["topk_graph", "routing_graph", "region_routing_graph", "ContentPattern", "ContentUnion",
           "KMeansRouting", "TopK", "RegionRouting"]


def _check_qk(q: Tensor, k: Tensor, seq_lengths: Optional[Sequence[int]]) -> tuple[int, ...]:
    if not isinstance(q, Tensor) or q.dim() != 3:
        raise ValueError(f"q must have shape [n, heads, channels], got "
                         f"{list(q.shape) if isinstance(q, Tensor) else type(q).__name__}")
    if not isinstance(k, Tensor) or k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {list(q.shape)}")
    lengths = (q.size(0),) if seq_lengths is None else tuple(int(s) for s in seq_lengths)
    if sum(lengths) != q.size(0) or any(s < 0 for s in lengths):
        raise ValueError(f"seq_lengths must be non-negative and sum to {q.size(0)}, got {list(lengths)}")
    return lengths


def _per_sequence(build, q: Tensor, k: Tensor, lengths: tuple[int, ...]) -> SeqGraph:
    if len(lengths) == 1:
        return build(q, k)
    starts = [sum(lengths[:s]) for s in range(len(lengths))]
    return batch([build(q[a:a + n], k[a:a + n]) for a, n in zip(starts, lengths)])


def _flat(x: Tensor) -> Tensor:
    """``[n, H * D]`` detached, in float32 (float64 stays float64) for the routing decisions."""
    return x.detach().flatten(1).to(torch.float64 if x.dtype == torch.float64 else torch.float32)


@torch.no_grad()
def topk_graph(q: Tensor, k: Tensor, topk: int, *, causal: bool = False, block_size: int = 512,
               seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
    r"""Each query attends its ``topk`` highest-scoring keys (causal: among :math:`j \le i`).

    Args:
        q, k: ``[n, H, D]``; scores are :math:`\sum_h \langle q_{i,h}, k_{j,h}\rangle`.
        topk: keys kept per query (all keys when ``topk >= n``, so ``topk = n`` is full attention).
        block_size: queries scored at once; memory :math:`O(\text{block\_size} \cdot n)`.
        seq_lengths: lengths of the sequences of a block-diagonal batch.
    """
    if not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive int, got {topk!r}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    lengths = _check_qk(q, k, seq_lengths)

    def build(qs: Tensor, ks: Tensor) -> SeqGraph:
        n = qs.size(0)
        kk = min(topk, n)
        qf, kf = _flat(qs), _flat(ks)
        rows, cols = [], []
        for a in range(0, n, block_size):          # loop over query blocks, not tokens
            i = torch.arange(a, min(a + block_size, n), device=q.device)
            s = qf[i] @ kf.T
            if causal:
                s = s.masked_fill(torch.arange(n, device=q.device)[None, :] > i[:, None], float("-inf"))
            val, idx = s.topk(kk, dim=1)
            keep = val > float("-inf")
            idx = torch.where(keep, idx, n).sort(dim=1).values   # dropped slots sort last
            keep = idx < n
            rows.append(i[:, None].expand_as(idx)[keep])
            cols.append(idx[keep])
        row = torch.cat(rows) if rows else torch.empty(0, dtype=torch.long, device=q.device)
        col = torch.cat(cols) if cols else torch.empty(0, dtype=torch.long, device=q.device)
        return SeqGraph(row, col, [n])

    return _per_sequence(build, q, k, lengths)


@torch.no_grad()
def routing_graph(query_cluster: Tensor, key_cluster: Tensor, *, causal: bool = False,
                  seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
    r"""Query :math:`i` attends the keys of its cluster: :math:`c_q(i) = c_k(j)` (causal: :math:`j \le i`).

    Args:
        query_cluster, key_cluster: ``[n]`` integer cluster ids.
        seq_lengths: lengths of the sequences of a block-diagonal batch (clusters are per sequence).

    Built without an :math:`n \times n` matrix: keys are sorted by (sequence, cluster,
    position), each query reads the slice of its cluster (cut at :math:`i` when causal).
    """
    if query_cluster.dim() != 1 or key_cluster.shape != query_cluster.shape or \
            query_cluster.dtype.is_floating_point or key_cluster.dtype.is_floating_point:
        raise ValueError("query_cluster and key_cluster must be integer tensors of the same shape [n]")
    n = query_cluster.numel()
    lengths = (n,) if seq_lengths is None else tuple(int(s) for s in seq_lengths)
    if sum(lengths) != n:
        raise ValueError(f"seq_lengths must sum to {n}, got {list(lengths)}")
    device = query_cluster.device
    seq = torch.repeat_interleave(torch.arange(len(lengths), device=device),
                                  torch.tensor(lengths, dtype=torch.long, device=device))
    num_c = int(torch.maximum(query_cluster.max(), key_cluster.max())) + 1 if n else 1
    cq = seq * num_c + query_cluster.long()
    ck = seq * num_c + key_cluster.long()
    pos = torch.arange(n, device=device)
    order = torch.argsort(ck * n + pos)
    sorted_key = (ck * n + pos)[order]
    counts = torch.bincount(ck, minlength=len(lengths) * num_c)
    start = counts.cumsum(0) - counts
    if causal:
        length = torch.searchsorted(sorted_key, cq * n + pos, right=True) - start[cq]
    else:
        length = counts[cq]
    row, slot = expand_segments(pos, start[cq], length)
    return SeqGraph(row, order[slot], lengths)


class ContentPattern(nn.Module):
    """Base of content-pattern modules: ``pattern(q, k, seq_lengths) -> SeqGraph``.

    ``content | static`` (a :class:`~graphattn.seq.patterns.Pattern`) adds the static edges,
    e.g. ``KMeansRouting(...) | SlidingWindow(64, causal=True)`` (routing plus local attention,
    as in the Routing Transformer).
    """

    def __or__(self, other: Pattern) -> "ContentUnion":
        return ContentUnion(self, other)


class ContentUnion(ContentPattern):
    """Union of a content pattern's graph and a static pattern's graph, per call."""

    def __init__(self, content: ContentPattern, static: Pattern):
        super().__init__()
        if not isinstance(content, nn.Module) or not isinstance(static, Pattern):
            raise TypeError("ContentUnion needs a content-pattern module and a static Pattern")
        self.content, self.static = content, static

    def forward(self, q: Tensor, k: Tensor, seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
        lengths = _check_qk(q, k, seq_lengths)
        return graph_union(self.content(q, k, lengths), self.static.batch(lengths, q.device))

    def extra_repr(self) -> str:
        return f"static={self.static!r}"


class KMeansRouting(ContentPattern):
    r"""Routing Transformer attention graph from online k-means (shared query/key centroids).

    Queries and keys (heads concatenated, normalised to the unit sphere) go to the nearest
    of ``num_clusters`` centroids :math:`\mu_c`; in training the centroids follow an
    exponential moving average of the unit vectors assigned to them,
    :math:`\mu_c \leftarrow \text{decay}\,\mu_c + (1 - \text{decay})\,\bar x_c`, renormalised.
    With one cluster the graph is full (or causal) attention.

    Args:
        dim: ``heads * channels`` of the routed vectors.
        num_clusters: :math:`C`.
        causal: keep only keys :math:`j \le i`.
        decay: EMA decay of the centroids.
    """

    def __init__(self, dim: int, num_clusters: int, causal: bool = False, decay: float = 0.999):
        super().__init__()
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.dim, self.num_clusters, self.causal, self.decay = dim, num_clusters, causal, decay
        self.register_buffer("centroids", F.normalize(torch.randn(num_clusters, dim), dim=-1))

    @torch.no_grad()
    def forward(self, q: Tensor, k: Tensor, seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
        _check_qk(q, k, seq_lengths)
        dt = self.centroids.dtype
        xq, xk = F.normalize(_flat(q).to(dt), dim=-1), F.normalize(_flat(k).to(dt), dim=-1)
        if xq.size(1) != self.dim:
            raise ValueError(f"q has heads * channels = {xq.size(1)}, the router expects {self.dim}")
        cq = (xq @ self.centroids.T).argmax(-1)
        ck = (xk @ self.centroids.T).argmax(-1)
        if self.training:
            x, c = torch.cat([xq, xk]), torch.cat([cq, ck])
            sums = torch.zeros_like(self.centroids).index_add_(0, c, x)
            counts = torch.bincount(c, minlength=self.num_clusters).unsqueeze(1)
            means = sums / counts.clamp_min(1)
            updated = self.decay * self.centroids + (1 - self.decay) * means
            self.centroids.copy_(torch.where(counts > 0, F.normalize(updated, dim=-1), self.centroids))
        return routing_graph(cq, ck, causal=self.causal, seq_lengths=seq_lengths)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_clusters={self.num_clusters}, causal={self.causal}, decay={self.decay}"


@torch.no_grad()
def region_routing_graph(q: Tensor, k: Tensor, region_size: int, topk: int, *, causal: bool = False,
                         seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
    r"""BiFormer's bi-level routing: region-to-region top-k, then tokens of the routed regions.

    Positions are cut into regions of ``region_size``; with the region means
    :math:`\bar q_a, \bar k_b` the affinity :math:`A_{ab} = \langle \bar q_a, \bar k_b\rangle`
    keeps the ``topk`` regions per region (causal: among :math:`b \le a`), and query
    :math:`i` in region :math:`a` attends every token :math:`j` of its routed regions
    (causal: :math:`j \le i`). ``topk >=`` the number of regions gives full attention.
    """
    for name, value in (("region_size", region_size), ("topk", topk)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    lengths = _check_qk(q, k, seq_lengths)

    def build(qs: Tensor, ks: Tensor) -> SeqGraph:
        n = qs.size(0)
        device = qs.device
        num_r = -(-n // region_size)
        region = torch.arange(n, device=device) // region_size
        size = torch.bincount(region, minlength=num_r).clamp_min(1).unsqueeze(1)
        qf, kf = _flat(qs), _flat(ks)
        qbar = torch.zeros(num_r, qf.size(1), dtype=qf.dtype, device=device).index_add_(0, region, qf)
        kbar = torch.zeros_like(qbar).index_add_(0, region, kf)
        aff = (qbar / size) @ (kbar / size).T
        if causal:
            r = torch.arange(num_r, device=device)
            aff = aff.masked_fill(r[None, :] > r[:, None], float("-inf"))
        val, routed = aff.topk(min(topk, num_r), dim=1)
        routed = torch.where(val > float("-inf"), routed, num_r).sort(dim=1).values   # [R, kk]
        per_query = routed[region]                                                     # [n, kk]
        start = per_query * region_size
        length = torch.clamp(n - start, max=region_size)
        pos = torch.arange(n, device=device)
        if causal:
            length = torch.where(per_query == region[:, None], pos[:, None] - start + 1, length)
        length = torch.where(per_query < num_r, length, torch.zeros_like(length))
        kk = per_query.size(1)
        row, col = expand_segments(pos.repeat_interleave(kk), start.reshape(-1), length.reshape(-1))
        return SeqGraph(row, col, [n])

    return _per_sequence(build, q, k, lengths)


class TopK(ContentPattern):
    """Content pattern: :func:`topk_graph` with fixed arguments (``pattern(q, k, seq_lengths)``)."""

    def __init__(self, topk: int, causal: bool = False, block_size: int = 512):
        super().__init__()
        self.topk, self.causal, self.block_size = topk, causal, block_size

    def forward(self, q: Tensor, k: Tensor, seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
        return topk_graph(q, k, self.topk, causal=self.causal, block_size=self.block_size,
                          seq_lengths=seq_lengths)

    def extra_repr(self) -> str:
        return f"topk={self.topk}, causal={self.causal}"


class RegionRouting(ContentPattern):
    """Content pattern: :func:`region_routing_graph` with fixed arguments."""

    def __init__(self, region_size: int, topk: int, causal: bool = False):
        super().__init__()
        self.region_size, self.topk, self.causal = region_size, topk, causal

    def forward(self, q: Tensor, k: Tensor, seq_lengths: Optional[Sequence[int]] = None) -> SeqGraph:
        return region_routing_graph(q, k, self.region_size, self.topk, causal=self.causal,
                                    seq_lengths=seq_lengths)

    def extra_repr(self) -> str:
        return f"region_size={self.region_size}, topk={self.topk}, causal={self.causal}"
