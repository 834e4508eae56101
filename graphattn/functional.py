r"""Functional graph attention on an :class:`~graphattn.graph.AttentionGraph`.

.. math::
    s_{ij} = \text{scale}\,\langle q_i, k_j\rangle + b_{ij},\qquad
    a_{ij} = \operatorname{normalise}_{j \in \mathcal N(i)}(s_{ij}),\qquad
    o_i = \sum_{j \in \mathcal N(i)} \operatorname{dropout}(a_{ij})\, v_j

computed on the engine's ops (:mod:`sparse_kernels`): one fused op when neither dropout
nor the weights are asked for, otherwise SDDMM -> edge normalisation -> SpMM. Memory is
:math:`O(E \cdot H + N \cdot H \cdot D)`; no :math:`E \times H \times D` message tensor is formed.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

import sparse_kernels as sk
from sparse_kernels.bsr import BSR, select_bsr

from .graph import AttentionGraph

__all__ = ["graph_attention", "attention_weights", "as_attention_graph", "NORMALIZERS"]

NORMALIZERS = sk.NORMALIZERS

GraphLike = Union[AttentionGraph, Tensor, Any]


def as_attention_graph(graph: GraphLike, num_dst_nodes: int, num_src_nodes: int) -> AttentionGraph:
    """Turns an ``AttentionGraph``, an ``edge_index`` ``[2, E]`` or a sparse ``[N_dst, N_src]``
    adjacency (torch.sparse or ``SparseTensor``) into an :class:`AttentionGraph`."""
    if isinstance(graph, AttentionGraph):
        return graph
    if isinstance(graph, Tensor) and graph.layout == torch.strided:
        return AttentionGraph(graph, num_src_nodes, num_dst_nodes)
    if isinstance(graph, Tensor) or hasattr(graph, "sparse_sizes"):
        return AttentionGraph.from_sparse(graph)
    raise TypeError(f"graph must be an AttentionGraph, an edge_index tensor or a sparse adjacency, "
                    f"got {type(graph).__name__}")


def _block_sparse_layout(q: Tensor, k: Tensor, v: Tensor, csr: sk.CSR, bias: Optional[Tensor],
                         normalizer: str) -> Optional[BSR]:
    """The BSR layout when the block-sparse kernel serves this call, else ``None`` (CSR path).

    Chosen automatically from the graph's tile occupancy (:func:`sparse_kernels.bsr.select_bsr`,
    cached per graph) for CUDA fp16/bf16 softmax attention without bias; the CPU, float32/64,
    other normalisers, biases and ``torch.compile`` tracing always take the CSR path.
    """
    if (not q.is_cuda or bias is not None or normalizer != "softmax" or torch.compiler.is_compiling()
            or q.dtype not in (torch.float16, torch.bfloat16) or not k.dtype == v.dtype == q.dtype):
        return None
    return select_bsr(csr)


def graph_attention(q: Tensor, k: Tensor, v: Tensor, graph: GraphLike, *, bias: Optional[Tensor] = None,
                    scale: Optional[float] = None, normalizer: str = "softmax", dropout: float = 0.0,
                    return_weights: bool = False) -> Union[Tensor, tuple[Tensor, Tensor]]:
    r"""Multi-head attention of every destination node over its in-edges.

    Args:
        q: ``[N_dst, H, D]`` queries (destination side).
        k: ``[N_src, H, D]`` keys (source side).
        v: ``[N_src, H, Dv]`` values; ``Dv`` may differ from ``D``.
        graph: an :class:`AttentionGraph`, an ``edge_index`` ``[2, E]`` (row 0 sources), or a
            sparse ``[N_dst, N_src]`` adjacency.
        bias: optional additive score bias ``[E, H]`` in the user's edge order.
        scale: score scale, default :math:`1/\sqrt{D}`.
        normalizer: ``"softmax"``, ``"sigmoid"`` or ``"softplus"`` (l1-normalised softplus).
        dropout: probability of dropping an attention weight (applied whenever > 0, as in
            :func:`~torch.nn.functional.scaled_dot_product_attention`; pass ``0.0`` in eval).
        return_weights: also return the (pre-dropout) weights ``[E, H]`` in the user's order.

    Returns:
        ``[N_dst, H, Dv]`` in the dtype of ``q`` (and the weights when asked). A destination
        with no in-edge gets a zero row and zero gradients.

    On CUDA, fp16/bf16 softmax attention without bias runs the block-sparse (BSR) kernel
    when the graph's tiles are well filled (windows, blocks, causal, global tokens; see
    :func:`sparse_kernels.bsr.select_bsr`) and the CSR kernels otherwise; same semantics.
    """
    if not isinstance(q, Tensor) or q.dim() != 3:
        raise ValueError(f"q must be a tensor of shape [N_dst, heads, channels], got "
                         f"{list(q.shape) if isinstance(q, Tensor) else type(q).__name__}")
    if not isinstance(k, Tensor) or k.dim() != 3:
        raise ValueError("k must be a tensor of shape [N_src, heads, channels]")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    graph = as_attention_graph(graph, q.size(0), k.size(0))
    csr = graph.csr
    sk.validate_attention_inputs(q, k, v, csr, bias, normalizer)
    if scale is None:
        scale = q.size(-1) ** -0.5
    bias_csr = None if bias is None else graph.to_csr_order(bias)

    if dropout == 0.0 and not return_weights:
        layout = _block_sparse_layout(q, k, v, csr, bias, normalizer)
        if layout is not None:
            from sparse_kernels.triton.bsr import bsr_attention
            return bsr_attention(q, k, v, layout, scale)
        return sk.attention_with_stats(q, k, v, csr, bias_csr, scale, normalizer, validate=False)[0]

    weights = _csr_weights(q, k, csr, bias_csr, scale, normalizer)
    dropped = F.dropout(weights, p=dropout) if dropout > 0.0 else weights
    out = sk.spmm(dropped, v, csr).to(q.dtype)
    if return_weights:
        return out, graph.to_user_order(weights)
    return out


def _csr_weights(q: Tensor, k: Tensor, csr: sk.CSR, bias_csr: Optional[Tensor], scale: float,
                 normalizer: str) -> Tensor:
    scores = sk.sddmm(q, k, csr) * scale
    if bias_csr is not None:
        scores = scores + bias_csr.to(scores.dtype)
    return sk.edge_softmax(scores, csr, normalizer)


def attention_weights(q: Tensor, k: Tensor, graph: GraphLike, *, bias: Optional[Tensor] = None,
                      scale: Optional[float] = None, normalizer: str = "softmax") -> Tensor:
    r"""The normalised attention weights :math:`a_{ij}` ``[E, H]`` in the user's edge order
    (SDDMM + edge normalisation), for layers that need per-edge values.

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; graph, bias, scale, normalizer: as in
            :func:`graph_attention`.
    """
    graph = as_attention_graph(graph, q.size(0), k.size(0))
    sk.validate_attention_inputs(q, k, k[..., :1], graph.csr, bias, normalizer)
    scale = q.size(-1) ** -0.5 if scale is None else scale
    bias_csr = None if bias is None else graph.to_csr_order(bias)
    return graph.to_user_order(_csr_weights(q, k, graph.csr, bias_csr, scale, normalizer))
