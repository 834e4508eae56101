"""graphattn: attention is message passing.

Every attention is computed on an attention graph: scores on edges (SDDMM), a per-node
normalisation (softmax or an alternative) and aggregation (SpMM), on the engine in
:mod:`sparse_kernels`.
"""
from .functional import (NORMALIZERS, aggregate, as_attention_graph, attention_weights, edge_scores, graph_attention,
                         normalize)
from .graph import AttentionGraph

from . import adapters, models, nn, seq, sparsify, utils  # noqa: E402  (they import the functional API above)
from .adapters import PAdapterConfig, SparseGINAdapterConfig, inject_adapters  # noqa: E402
from .sparsify import GTSP, GTSPConfig  # noqa: E402
from .utils import count_flops  # noqa: E402
from .nn import (GATConv, GatedGCNLayer, GATv2Conv, GINAttention, GPSLayer, GraphAttnConv,  # noqa: E402
                 GraphTransformerLayer, PNAAttention, VirtualNode)

__version__ = "0.1.0"

__all__ = ["AttentionGraph", "graph_attention", "attention_weights", "edge_scores", "normalize", "aggregate",
           "as_attention_graph", "NORMALIZERS",
           "nn", "models", "seq", "GraphAttnConv", "GATConv", "GATv2Conv", "GraphTransformerLayer", "GPSLayer",
           "GatedGCNLayer", "VirtualNode",
           "GINAttention", "PNAAttention", "adapters", "inject_adapters", "PAdapterConfig",
           "SparseGINAdapterConfig", "sparsify", "utils", "GTSP", "GTSPConfig", "count_flops", "__version__"]
