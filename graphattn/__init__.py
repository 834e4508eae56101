"""graphattn: attention is message passing.

Every attention is computed on an attention graph: scores on edges (SDDMM), a per-node
normalisation (softmax or an alternative) and aggregation (SpMM), on the engine in
:mod:`sparse_kernels`.
"""
from .functional import NORMALIZERS, as_attention_graph, graph_attention
from .graph import AttentionGraph

__version__ = "0.1.0"

__all__ = ["AttentionGraph", "graph_attention", "as_attention_graph", "NORMALIZERS", "__version__"]
