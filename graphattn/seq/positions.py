r"""Positions for sequence graphs: rotary embeddings on q/k and relative terms as edge biases.

* :class:`RotaryEmbedding` — RoPE (Su et al.): rotates channel pairs of :math:`q_i, k_j` by
  angles :math:`p\,\theta_c`, so :math:`\langle q_i, k_j\rangle` depends on :math:`i - j` only.
* :func:`alibi_bias` — ALiBi (Press et al.): :math:`b_{ij,h} = -m_h\,|i - j|` with the
  geometric slopes :math:`m_h` of :func:`alibi_slopes`.
* :class:`RelativePositionBias` — a learned bias per head and clipped offset
  :math:`\operatorname{clip}(i - j, -d_{\max}, d_{\max})`.
* :func:`length_bias` — the :math:`-\log n` shift of sigmoid attention (FlashSigmoid), with
  :math:`n` the length of the query's sequence.

Edge biases are ``[E, H]`` in the graph's user edge order, ready for
``graph_attention(..., bias=...)``. Offsets are computed from the graph's positions, so they
are the same inside every sequence of a block-diagonal batch.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..graph import AttentionGraph

__all__ = ["sequence_positions", "RotaryEmbedding", "alibi_slopes", "alibi_bias", "RelativePositionBias",
           "length_bias"]


def sequence_positions(seq_lengths: Sequence[int], device: Optional[torch.device] = None) -> Tensor:
    """``[sum(seq_lengths)]`` position of every token inside its own sequence."""
    lengths = torch.tensor([int(s) for s in seq_lengths], dtype=torch.long, device=device)
    starts = lengths.cumsum(0) - lengths
    return torch.arange(int(lengths.sum()), device=device) - starts.repeat_interleave(lengths)


def _offsets(graph: AttentionGraph) -> Tensor:
    src, dst = graph.edge_index
    return dst - src                                   # i - j


class RotaryEmbedding(nn.Module):
    r"""Rotary position embedding (GPT-NeoX half-split layout).

    Channel :math:`c < D/2` is paired with :math:`c + D/2` and the pair is rotated by
    :math:`p\,\theta_c`, :math:`\theta_c = \text{base}^{-2c/D}`.

    Args:
        dim: channels per head :math:`D` (even).
        base: frequency base.
    """

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even for rotary embeddings, got {dim}")
        self.dim = dim
        self.register_buffer("inv_freq", base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim),
                             persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotates ``x`` ``[n, H, D]`` at integer ``positions`` ``[n]``."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ValueError(f"x must have shape [n, heads, {self.dim}], got {list(x.shape)}")
        angle = positions.to(torch.float64)[:, None] * self.inv_freq.to(x.device)[None, :]
        cos = angle.cos().to(x.dtype).unsqueeze(1)
        sin = angle.sin().to(x.dtype).unsqueeze(1)
        a, b = x[..., :self.dim // 2], x[..., self.dim // 2:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def alibi_slopes(num_heads: int) -> Tensor:
    r"""ALiBi slopes: :math:`m_h = 2^{-8 (h+1) / H}` for a power-of-two :math:`H`; otherwise the
    paper's interleaving of the next power of two."""
    def powers(n: int) -> list[float]:
        start = 2 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = powers(closest)
    if closest < num_heads:
        slopes += powers(2 * closest)[0::2][:num_heads - closest]
    return torch.tensor(slopes)


def alibi_bias(graph: AttentionGraph, num_heads: int, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""``[E, H]`` ALiBi bias :math:`-m_h\,|i - j|` on the graph's edges (user order)."""
    slopes = alibi_slopes(num_heads).to(device=graph.device, dtype=dtype)
    return -_offsets(graph).abs().to(dtype)[:, None] * slopes[None, :]


class RelativePositionBias(nn.Module):
    r"""Learned bias per head and relative offset, :math:`b_{ij,h} = w_{h}[\operatorname{clip}(i - j)]`.

    Args:
        num_heads: :math:`H`.
        max_distance: offsets are clipped to :math:`[-d_{\max}, d_{\max}]`
            (to :math:`[0, d_{\max}]` when ``causal``).
        causal: only non-negative offsets occur (halves the table).
    """

    def __init__(self, num_heads: int, max_distance: int = 128, causal: bool = False):
        super().__init__()
        self.num_heads, self.max_distance, self.causal = num_heads, max_distance, causal
        self.weight = nn.Parameter(torch.zeros(max_distance + 1 if causal else 2 * max_distance + 1,
                                               num_heads))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def forward(self, graph: AttentionGraph) -> Tensor:
        """``[E, H]`` bias on the graph's edges (user order)."""
        lo = 0 if self.causal else -self.max_distance
        offset = _offsets(graph).clamp(lo, self.max_distance) - lo
        return self.weight[offset]

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, max_distance={self.max_distance}, causal={self.causal}"


def length_bias(graph: AttentionGraph, seq_lengths: Sequence[int], num_heads: int,
                dtype: torch.dtype = torch.float32) -> Tensor:
    r"""``[E, H]`` constant :math:`-\log n_{s(i)}` per edge, :math:`n_{s(i)}` the length of the
    query's sequence: the bias that makes sigmoid attention start at a total weight of
    about one per row (FlashSigmoid's :math:`b = -\log n`)."""
    counts = torch.tensor([int(s) for s in seq_lengths], dtype=torch.long, device=graph.device)
    if int(counts.sum()) != graph.num_dst_nodes:
        raise ValueError(f"seq_lengths must sum to the graph's {graph.num_dst_nodes} positions")
    per_token = torch.log(counts.clamp_min(1).to(dtype)).repeat_interleave(counts)
    return -per_token[graph.edge_index[1]][:, None].expand(-1, num_heads)
