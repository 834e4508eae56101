r"""Functional graph attention on an :class:`~graphattn.graph.AttentionGraph`, in the user's edge order.

.. math::
    s_{ij} = \text{scale}\,\langle q_i, k_j + e^k_{ij}\rangle + b_{ij},\qquad
    a_{ij} = \operatorname{normalise}_{j \in \mathcal N(i)}(s_{ij}),\qquad
    o_i = \sum_{j \in \mathcal N(i)} \operatorname{dropout}(a_{ij})\, (v_j + e^v_{ij})

:func:`graph_attention` runs the whole formula on the engine (:mod:`sparse_kernels`), which picks
the implementation (fused CSR kernels, block-sparse or dense blocks) per call; memory is
:math:`O(E \cdot H + N \cdot H \cdot D)` plus the per-edge inputs given. For layers that need the
per-edge values, the three steps are public too, every per-edge tensor in the user's edge order
(the order of ``graph.edge_index``):

* :func:`edge_scores` — :math:`s_{ij}` ``[E, H]``;
* :func:`normalize` — :math:`a_{ij}` ``[E, H]`` with any normaliser: softmax, sigmoid, l1-softplus,
  Dwivedi & Bresson's clamped exponential, FlashSigmoid's length bias, multiplicative edge weights;
* :func:`aggregate` — :math:`o_i = \sum_j a_{ij} (v_j + e^v_{ij})`.

:func:`dropout` is the models' feature dropout (``torch.nn.functional.dropout``'s arguments and
distribution) with the engine's counter-based mask instead of ``bernoulli_``: the mask is a hash of a seed
drawn from PyTorch's generator and the element index, regenerated in the backward, never stored.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

import sparse_kernels as sk

from .graph import AttentionGraph, cached_graph

__all__ = ["graph_attention", "attention_weights", "edge_scores", "normalize", "aggregate", "as_attention_graph",
           "explain", "dropout", "dropout_generator", "use_dropout_generator", "DROPOUT_GENERATORS", "NORMALIZERS"]

NORMALIZERS = sk.NORMALIZERS

GraphLike = Union[AttentionGraph, Tensor, Any]


def as_attention_graph(graph: GraphLike, num_dst_nodes: int, num_src_nodes: int) -> AttentionGraph:
    """Turns an ``AttentionGraph``, an ``edge_index`` ``[2, E]`` (built once per tensor, see
    ``cached_graph``) or a sparse ``[N_dst, N_src]`` adjacency (torch.sparse or
    ``SparseTensor``) into an :class:`AttentionGraph`."""
    if isinstance(graph, AttentionGraph):
        return graph
    if isinstance(graph, Tensor) and graph.layout == torch.strided:
        return cached_graph(graph, num_src_nodes, num_dst_nodes)
    if isinstance(graph, Tensor) or hasattr(graph, "sparse_sizes"):
        return AttentionGraph.from_sparse(graph)
    raise TypeError(f"graph must be an AttentionGraph, an edge_index tensor or a sparse adjacency, "
                    f"got {type(graph).__name__}")


def _check_qk(q: Any, k: Any) -> None:
    if not isinstance(q, Tensor) or q.dim() != 3:
        raise ValueError(f"q must be a tensor of shape [N_dst, heads, channels], got "
                         f"{list(q.shape) if isinstance(q, Tensor) else type(q).__name__}")
    if not isinstance(k, Tensor) or k.dim() != 3:
        raise ValueError(f"k must be a tensor of shape [N_src, heads, channels], got "
                         f"{list(k.shape) if isinstance(k, Tensor) else type(k).__name__}")


def graph_attention(q: Tensor, k: Tensor, v: Tensor, graph: GraphLike, *, bias: Optional[Tensor] = None,
                    edge_k: Optional[Tensor] = None, edge_v: Optional[Tensor] = None,
                    scale: Optional[float] = None, normalizer: str = "softmax", dropout: float = 0.0,
                    score: str = "dot", negative_slope: float = 0.2, att: Optional[Tensor] = None,
                    return_weights: bool = False) -> Union[Tensor, tuple[Tensor, Tensor]]:
    r"""Multi-head attention of every destination node over its in-edges.

    Args:
        q: ``[N_dst, H, D]`` queries (destination side).
        k: ``[N_src, H, D]`` keys (source side).
        v: ``[N_src, H, Dv]`` values; ``Dv`` may differ from ``D``.
        graph: an :class:`AttentionGraph`, an ``edge_index`` ``[2, E]`` (row 0 sources), or a
            sparse ``[N_dst, N_src]`` adjacency.
        bias: optional additive score bias ``[E, H]``.
        edge_k: optional ``[E, H, D]`` added to the key of each edge (TransformerConv's edge term).
        edge_v: optional ``[E, H, Dv]`` added to the value of each edge.
        scale: score scale, default :math:`1/\sqrt{D}`.
        normalizer: ``"softmax"``, ``"sigmoid"`` or ``"softplus"`` (l1-normalised softplus).
        dropout: probability of dropping an attention weight, applied whenever > 0 (as in
            :func:`~torch.nn.functional.scaled_dot_product_attention`; pass ``0.0`` in eval). The
            mask is counter-based (seeded from PyTorch's generator, regenerated in the backward,
            the same on every path; :mod:`sparse_kernels.dropout`).
        score: the score function: ``"dot"`` (above), ``"gat"`` (GAT's additive score
            :math:`\operatorname{LeakyReLU}(q_i + k_j + b_{ij})` with ``q`` ``[N_dst, H, 1]`` and ``k``
            ``[N_src, H, 1]``) or ``"gatv2"`` (:math:`\sum_d \text{att}_{hd} \operatorname{LeakyReLU}(q_i + k_j +
            e^k_{ij})_d + b_{ij}`); ``scale`` is for ``"dot"`` only.
        negative_slope: the LeakyReLU slope of the gat scores.
        att: GATv2's attention vector ``[H, D]`` (``"gatv2"`` only; it receives a gradient).
        return_weights: also return the (pre-dropout) weights ``[E, H]``.

    Per-edge tensors (``bias``, ``edge_k``, ``edge_v``, the weights) are in the user's edge order.

    Returns:
        ``[N_dst, H, Dv]`` in the dtype of ``q`` (and the weights when asked). A destination
        with no in-edge gets a zero row and zero gradients.
    """
    _check_qk(q, k)
    graph = as_attention_graph(graph, q.size(0), k.size(0))
    score_args = dict(score=score, negative_slope=negative_slope, att=att)
    out = sk.attention(q, k, v, graph.csr, bias, scale, normalizer, edge_k=edge_k, edge_v=edge_v, dropout=dropout,
                       **score_args)
    if return_weights:
        return out, attention_weights(q, k, graph, bias=bias, edge_k=edge_k, scale=scale, normalizer=normalizer,
                                      **score_args)
    return out


def explain(q: Tensor, k: Tensor, v: Tensor, graph: GraphLike, **options: Any) -> dict[str, str]:
    """Which engine path (and kernel) :func:`graph_attention` with these arguments runs:
    ``{"path": "csr" | "bsr" | "dense_blocks", "kernel": ...}``."""
    _check_qk(q, k)
    graph = as_attention_graph(graph, q.size(0), k.size(0))
    return sk.explain(q, k, v, graph.csr, **options)


def _segment_sum(values: Tensor, graph: AttentionGraph) -> Tensor:
    """Sums per-edge rows ``[E, ...]`` into their destinations ``[N_dst, ...]``."""
    out = values.new_zeros((graph.num_dst_nodes,) + tuple(values.shape[1:]))
    return out.index_add_(0, graph.edge_index[1], values)


def _check_edge_tensor(name: str, x: Optional[Tensor], graph: AttentionGraph, shape: tuple[int, ...]) -> None:
    if x is not None and (not isinstance(x, Tensor) or tuple(x.shape) != (graph.num_edges, *shape)):
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape {[graph.num_edges, *shape]}, got {got}")


def edge_scores(q: Tensor, k: Tensor, graph: GraphLike, *, bias: Optional[Tensor] = None,
                edge_k: Optional[Tensor] = None, scale: Optional[float] = None, score: str = "dot",
                negative_slope: float = 0.2, att: Optional[Tensor] = None) -> Tensor:
    r"""Per-edge scores :math:`s_{ij}` ``[E, H]``: :math:`\text{scale}\,\langle q_i, k_j + e^k_{ij}\rangle + b_{ij}`
    for ``score="dot"``, or GAT's / GATv2's scores (see :func:`graph_attention`).

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; bias ``[E, H]``, edge_k ``[E, H, D]``, scale, score,
            negative_slope, att: as in :func:`graph_attention`. The gatv2 scores form the ``[E, H, D]`` input of
            the LeakyReLU here (as PyG's ``GATv2Conv`` does); :func:`graph_attention` never does.
    """
    _check_qk(q, k)
    graph = as_attention_graph(graph, q.size(0), k.size(0))
    _check_edge_tensor("bias", bias, graph, (q.size(1),))
    _check_edge_tensor("edge_k", edge_k, graph, tuple(q.shape[1:]))
    if score != "dot":
        return _gat_scores(q, k, graph, bias, edge_k, score, negative_slope, att)
    scale = q.size(-1) ** -0.5 if scale is None else scale
    s = sk.sddmm(q, k, graph.csr)
    if edge_k is not None:
        s = s + (q.index_select(0, graph.edge_index[1]) * edge_k).sum(-1)
    s = s * scale
    return s if bias is None else s + bias.to(s.dtype)


def _gat_scores(q: Tensor, k: Tensor, graph: AttentionGraph, bias: Optional[Tensor], edge_k: Optional[Tensor],
                score: str, negative_slope: float, att: Optional[Tensor]) -> Tensor:
    src, dst = graph.edge_index
    if score == "gat":
        z = q[:, :, 0].index_select(0, dst) + k[:, :, 0].index_select(0, src)
        return F.leaky_relu(z if bias is None else z + bias.to(z.dtype), negative_slope)
    z = q.index_select(0, dst) + k.index_select(0, src)
    s = (F.leaky_relu(z if edge_k is None else z + edge_k, negative_slope) * att).sum(-1)
    return s if bias is None else s + bias.to(s.dtype)


def normalize(scores: Tensor, graph: GraphLike, normalizer: str = "softmax", *, clamp: Optional[float] = None,
              length_bias: bool = False, edge_weight: Optional[Tensor] = None) -> Tensor:
    r"""Normalises per-edge scores ``[E, H]`` over each destination's in-edges, ``[E, H]``.

    Args:
        scores: ``[E, H]`` (e.g. from :func:`edge_scores`).
        graph: the attention graph (an ``edge_index`` needs ``num_nodes``: pass an ``AttentionGraph``).
        normalizer: ``"softmax"`` :math:`e^{s_{ij}} / \sum_{j'} e^{s_{ij'}}`, ``"sigmoid"``
            :math:`\sigma(s_{ij})` or ``"softplus"`` :math:`\operatorname{softplus}(s_{ij}) / \sum_{j'}
            \operatorname{softplus}(s_{ij'})`.
        clamp: Dwivedi & Bresson's weights :math:`e^{\operatorname{clamp}(s, -c, c)} / (\sum_{j'}
            e^{\operatorname{clamp}(s, -c, c)} + 10^{-6})` instead of the softmax (``normalizer`` softmax).
        length_bias: subtract :math:`\log n_i` (:math:`n_i` the in-degree of the destination) from the
            scores first: FlashSigmoid's :math:`b = -\log n`, which starts sigmoid attention at a total
            weight of about one per row; with softplus the same shift acts as a length-dependent scale.
        edge_weight: optional ``[E]`` or ``[E, H]`` multiplicative prior :math:`m_{ij} \ge 0` of a weighted
            softmax :math:`m_{ij} e^{s_{ij}} / \sum_{j'} m_{ij'} e^{s_{ij'}}` (rows with no positive weight
            give 0); differentiable in ``m`` (GTSP's edge masks).

    A row without edges has no weights; rows whose weights are all zero stay zero (never NaN).
    """
    if not isinstance(graph, AttentionGraph):
        raise TypeError(f"graph must be an AttentionGraph (node counts), got {type(graph).__name__}")
    if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.size(0) != graph.num_edges:
        raise ValueError(f"scores must have shape [{graph.num_edges}, heads], got "
                         f"{list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
    if (clamp is not None or edge_weight is not None) and normalizer != "softmax":
        raise ValueError("clamp and edge_weight apply to the softmax normaliser only")
    if clamp is not None and clamp <= 0:
        raise ValueError(f"clamp must be positive, got {clamp}")
    if edge_weight is not None:
        if edge_weight.dim() == 1:
            edge_weight = edge_weight.unsqueeze(-1)
        _check_edge_tensor("edge_weight", edge_weight, graph, (edge_weight.size(1),))
    if length_bias:
        degree = graph.in_degree().clamp_min(1).to(scores.dtype)
        scores = scores - torch.log(degree).index_select(0, graph.edge_index[1]).unsqueeze(-1)
    if clamp is not None:
        w = scores.clamp(-clamp, clamp).exp()
        if edge_weight is not None:
            w = w * edge_weight.to(w.dtype)
        return w / (_segment_sum(w, graph) + 1e-6).index_select(0, graph.edge_index[1])
    if edge_weight is not None:
        return _weighted_softmax(scores, edge_weight.to(scores.dtype), graph)
    return sk.edge_softmax(scores, graph.csr, normalizer)


def _weighted_softmax(scores: Tensor, weight: Tensor, graph: AttentionGraph) -> Tensor:
    r""":math:`a_{ij} = m_{ij} e^{s_{ij} - c_i} / \sum_{j'} m_{ij'} e^{s_{ij'} - c_i}` with :math:`c_i` the largest
    score of a positively weighted edge of row :math:`i` (so a row's denominator is at least its largest
    weight); the :math:`e^{s - c}` of an edge with weight 0 is capped at 1, which only its gradient sees."""
    dst = graph.edge_index[1]
    kept = (weight.detach() > 0).expand_as(scores)
    top = scores.detach().masked_fill(~kept, -math.inf)
    top = top.new_full((graph.num_dst_nodes, scores.size(1)), -math.inf).scatter_reduce(
        0, dst.unsqueeze(-1).expand_as(top), top, "amax")
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    w = torch.exp((scores - top.index_select(0, dst)).clamp(max=0.0)) * weight
    z = _segment_sum(w, graph)
    return w / torch.where(z > 0, z, torch.ones_like(z)).index_select(0, dst)


def aggregate(weights: Tensor, v: Tensor, graph: GraphLike, *, edge_v: Optional[Tensor] = None) -> Tensor:
    r""":math:`o_i = \sum_j w_{ij} (v_j + e^v_{ij})` ``[N_dst, H, Dv]`` for weights ``[E, H]``.

    Args:
        weights: ``[E, H]``; v: ``[N_src, H, Dv]``; edge_v: optional ``[E, H, Dv]``.
        graph: the attention graph (an ``edge_index`` needs ``num_nodes``: pass an ``AttentionGraph``).
    """
    if not isinstance(graph, AttentionGraph):
        raise TypeError(f"graph must be an AttentionGraph (node counts), got {type(graph).__name__}")
    out = sk.spmm(weights, v, graph.csr)
    if edge_v is not None:
        _check_edge_tensor("edge_v", edge_v, graph, tuple(v.shape[1:]))
        out = out + _segment_sum(weights.to(edge_v.dtype).unsqueeze(-1) * edge_v, graph)
    return out


def attention_weights(q: Tensor, k: Tensor, graph: GraphLike, *, bias: Optional[Tensor] = None,
                      edge_k: Optional[Tensor] = None, scale: Optional[float] = None,
                      normalizer: str = "softmax", score: str = "dot", negative_slope: float = 0.2,
                      att: Optional[Tensor] = None) -> Tensor:
    r"""The normalised attention weights :math:`a_{ij}` ``[E, H]`` (:func:`edge_scores` then
    :func:`normalize`), for layers that need per-edge values.

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; graph, bias, edge_k, scale, normalizer, score,
            negative_slope, att: as in :func:`graph_attention`.
    """
    _check_qk(q, k)
    graph = as_attention_graph(graph, q.size(0), k.size(0))
    sk.validate_attention_inputs(q, k, k[..., :1], graph.csr, bias, normalizer, edge_k, score=score, att=att)
    scores = edge_scores(q, k, graph, bias=bias, edge_k=edge_k, scale=scale, score=score,
                         negative_slope=negative_slope, att=att)
    return normalize(scores, graph, normalizer)


#: The generators :func:`dropout` can draw its masks with: ``"counter-v1"`` (the default: the engine's
#: counter hash of :mod:`sparse_kernels.dropout` on the element index, one seed per call from PyTorch's
#: generator) and ``"torch-bernoulli"`` (``torch.nn.functional.dropout``: the masks of graphattn before the
#: counter dropout, to reproduce or resume runs made with them). The environment variable
#: ``GRAPHATTN_DROPOUT`` sets the one of a process, :func:`use_dropout_generator` the one of a block;
#: checkpoints record the one in use.
DROPOUT_GENERATORS = ("counter-v1", "torch-bernoulli")


def _check_generator(name: str, source: str) -> str:
    if name not in DROPOUT_GENERATORS:
        raise ValueError(f"{source} must be one of {DROPOUT_GENERATORS}, got {name!r}")
    return name


_dropout_generator = _check_generator(os.environ.get("GRAPHATTN_DROPOUT", DROPOUT_GENERATORS[0]), "GRAPHATTN_DROPOUT")


def dropout_generator() -> str:
    """The name of the generator :func:`dropout` draws its masks with (see :data:`DROPOUT_GENERATORS`)."""
    return _dropout_generator


@contextlib.contextmanager
def use_dropout_generator(name: str) -> Iterator[None]:
    """Draws the masks of :func:`dropout` with the generator ``name`` inside the block (benchmarks compare
    the two; an old run is resumed under ``"torch-bernoulli"``)."""
    global _dropout_generator
    previous, _dropout_generator = _dropout_generator, _check_generator(name, "the dropout generator")
    try:
        yield
    finally:
        _dropout_generator = previous


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    r"""``torch.nn.functional.dropout`` with the engine's counter-based mask: in training, element :math:`t`
    of ``x`` (row-major index) is kept with probability :math:`1 - p` (exactly
    :math:`1 - \operatorname{round}(p \cdot 2^{24}) / 2^{24}`) and scaled by :math:`1 / (1 - p)`, else 0.
    The mask is a hash of :math:`t` and a seed drawn from PyTorch's generator (``torch.manual_seed``
    governs it) and the backward regenerates it (:func:`sparse_kernels.elementwise_dropout`). Out of
    training, or with ``p = 0``, ``x`` itself is returned.

    Args:
        x: a floating-point tensor of any shape.
        p: probability of an element to be zeroed, in :math:`[0, 1]`.
        training: apply dropout only when ``True``.
        inplace: write the result into ``x``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if _dropout_generator == "torch-bernoulli":
        return F.dropout(x, p, training, inplace)
    out = sk.elementwise_dropout(x, p)
    return x.copy_(out) if inplace else out
