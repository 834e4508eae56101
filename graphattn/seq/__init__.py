r"""Sequence models as graphs: attention patterns over token positions and models on them.

A sparse-attention scheme is an attention graph (``patterns``: static, cached per length;
``content``: built per input from q and k) plus a normaliser plus optional edge biases
(``positions``), run by :func:`graphattn.graph_attention`; ``model`` stacks it into
:class:`SeqGraphTransformer`.
"""
from .content import (ContentPattern, ContentUnion, KMeansRouting, RegionRouting, TopK, region_routing_graph,
                      routing_graph, topk_graph)
from .model import SeqGraphAttention, SeqGraphTransformer
from .patterns import (Blocks, Causal, Dilated, Full, GlobalTokens, IntersectionPattern, Pattern, RandomKeys,
                       SeqGraph, SlidingWindow, Strided, UnionPattern, batch, blocks, causal, clear_cache,
                       dilated, full, global_tokens, graph_intersection, graph_union, random, sliding_window,
                       strided)
from .positions import (RelativePositionBias, RotaryEmbedding, alibi_bias, alibi_slopes, length_bias,
                        sequence_positions)

__all__ = [
    "SeqGraph", "Pattern", "Full", "Causal", "SlidingWindow", "Dilated", "Blocks", "Strided", "GlobalTokens",
    "RandomKeys", "UnionPattern", "IntersectionPattern", "full", "causal", "sliding_window", "dilated",
    "blocks", "strided", "global_tokens", "random", "batch", "graph_union", "graph_intersection",
    "clear_cache", "ContentPattern", "ContentUnion", "topk_graph", "routing_graph", "region_routing_graph", "TopK",
    "KMeansRouting", "RegionRouting", "RotaryEmbedding", "alibi_slopes", "alibi_bias", "RelativePositionBias",
    "length_bias", "sequence_positions", "SeqGraphAttention", "SeqGraphTransformer",
]
