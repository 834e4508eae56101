r"""Plain-PyTorch reductions shared by the layers (no engine calls: attention goes through
:mod:`graphattn.functional`).

* :func:`segment_sum` — rows summed into buckets (graphs of a batch, destinations of edges);
* :func:`neighbour_max` — :math:`o_{i} = \max_{j \in \mathcal N(i)} w_{ij} x_j` over neighbours only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..graph import AttentionGraph

__all__ = ["segment_sum", "neighbour_max"]


def segment_sum(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Sums rows of ``values`` ``[N, ...]`` into ``num_segments`` buckets given by ``index`` ``[N]``."""
    out = values.new_zeros((num_segments,) + tuple(values.shape[1:]))
    return out.index_add(0, index, values)


def _edge_chunk(heads: int, channels: int) -> int:
    return max(1, (1 << 22) // max(1, heads * channels))


def neighbour_max(weights: Tensor, x: Tensor, graph: AttentionGraph) -> Tensor:
    r""":math:`o_{i,h,d} = \max_{j \in \mathcal N(i)} w_{ij,h}\, x_{j,h,d}` ``[N_dst, H, D]`` (zeros
    for a node without in-edges), over neighbours :math:`j` only.

    The arg-max edge of every output entry is found in edge chunks without autograd (peak
    ``chunk x H x D``); the result is then gathered from that edge, so gradients flow to the
    selected ``w`` and ``x`` entries and nothing per edge is kept for the backward pass.
    """
    src, dst = graph.edge_index
    n_dst, heads, channels = graph.num_dst_nodes, x.size(1), x.size(2)
    chunk = _edge_chunk(heads, channels)
    with torch.no_grad():
        best = x.new_full((n_dst, heads, channels), float("-inf"))
        for s in range(0, graph.num_edges, chunk):
            msg = weights[s:s + chunk, :, None] * x[src[s:s + chunk]]
            best = best.scatter_reduce(0, dst[s:s + chunk, None, None].expand_as(msg), msg, "amax")
        arg = torch.full((n_dst, heads, channels), -1, dtype=torch.long, device=x.device)
        for s in range(0, graph.num_edges, chunk):
            msg = weights[s:s + chunk, :, None] * x[src[s:s + chunk]]
            d = dst[s:s + chunk, None, None].expand_as(msg)
            ids = torch.arange(s, s + msg.size(0), device=x.device)[:, None, None].expand_as(msg)
            cand = torch.where(msg == best.gather(0, d), ids, -1)
            arg = arg.scatter_reduce(0, d, cand, "amax")
    found = arg >= 0
    edge = arg.clamp(min=0)
    h_idx = torch.arange(heads, device=x.device)[None, :, None]
    d_idx = torch.arange(channels, device=x.device)[None, None, :]
    picked = weights[edge, h_idx] * x[src[edge], h_idx, d_idx]
    return torch.where(found, picked, torch.zeros_like(picked))
