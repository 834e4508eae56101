r"""Per-edge helpers shared by the layers, built on the engine's ops (:mod:`sparse_kernels`).

* :func:`aggregate` — :math:`o_i = \sum_j w_{ij} v_j`;
* :func:`edge_feature_bias` — :math:`b_{ij,h} = \langle u_{i,h}, f_{ij}\rangle` for node vectors
  ``u [N_dst, H, F]`` and edge features ``f [E, F]``;
* :func:`edge_feature_sum` — :math:`o_{i,h} = \sum_j w_{ij,h} f_{ij}` ``[N_dst, H, F]``.

Both run on the *edge-source graph* (one source per edge, ``e -> dst(e)``), as an SDDMM and an
SpMM of the engine one head at a time: the largest temporary is ``[E, F]``; no ``[E, H, F]``
tensor is formed. Layers may bypass them below :data:`DIRECT_ELEMENTS` per-edge elements, where
one gather for all heads (PyG's formulation) costs less than ``H`` engine calls.
"""
from __future__ import annotations

import torch
from torch import Tensor

import sparse_kernels as sk

from ..graph import AttentionGraph

__all__ = ["aggregate", "edge_source_graph", "edge_feature_bias", "edge_feature_sum", "DIRECT_ELEMENTS", "segment_sum"]

#: Largest ``E x H x C`` per-edge tensor a layer may form directly (4 MB in fp32) instead of
#: running the memory-lean engine path: batches of small graphs such as molecules.
DIRECT_ELEMENTS = 1 << 20


def aggregate(weights: Tensor, value: Tensor, graph: AttentionGraph) -> Tensor:
    r""":math:`o_i = \sum_j w_{ij} v_j` ``[N_dst, H, D]`` for weights ``[E, H]`` in the user's edge order."""
    return sk.spmm(graph.to_csr_order(weights), value, graph.csr)


def edge_source_graph(graph: AttentionGraph) -> AttentionGraph:
    """The graph with one source node per edge of ``graph`` (edge id ``e``) and the edge ``e -> dst(e)``."""
    num_edges = graph.num_edges
    src = torch.arange(num_edges, device=graph.device)
    return AttentionGraph(torch.stack([src, graph.edge_index[1]]), num_edges, graph.num_dst_nodes,
                          validate=False)


def edge_feature_bias(u: Tensor, edge_attr: Tensor, edge_graph: AttentionGraph) -> Tensor:
    r""":math:`b_{e,h} = \langle u_{\text{dst}(e),h}, f_e\rangle`, ``[E, H]`` in the user's edge order.

    Args:
        u: ``[N_dst, H, F]``; edge_attr: ``[E, F]``; edge_graph: from :func:`edge_source_graph`.
    """
    f = edge_attr.unsqueeze(1).contiguous()
    cols = [sk.sddmm(u[:, h:h + 1].contiguous(), f, edge_graph.csr) for h in range(u.size(1))]
    return edge_graph.to_user_order(torch.cat(cols, dim=1))


def edge_feature_sum(weight: Tensor, edge_attr: Tensor, edge_graph: AttentionGraph) -> Tensor:
    r""":math:`o_{i,h} = \sum_{e:\,\text{dst}(e)=i} w_{e,h} f_e`, ``[N_dst, H, F]``.

    Args:
        weight: ``[E, H]`` in the user's edge order; edge_attr: ``[E, F]``.
    """
    f = edge_attr.unsqueeze(1).contiguous()
    w = edge_graph.to_csr_order(weight)
    cols = [sk.spmm(w[:, h:h + 1].contiguous(), f, edge_graph.csr) for h in range(weight.size(1))]
    return torch.cat(cols, dim=1)


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
