r"""GTSP sparsification of graph transformers (Liu et al., "Exploring Sparsity in Graph
Transformers", 2024) with real savings: what is pruned leaves the computation.

* input data: :class:`TokenMask`, :class:`EdgeMask` (per-graph Gumbel top-k, straight-through);
* heads: :class:`HeadPruner` (gradient importance, prune-and-regrow);
* layers: :class:`LayerPruner` (drop-path, then removal of attention blocks);
* weights: :class:`WeightPruner` (global magnitude, cubic schedule, optional regrowth);
* :class:`GTSP` wraps a :class:`~graphattn.models.GPS` (:class:`SparseGPS`) or a
  :class:`~graphattn.models.GraphTrans` (:class:`SparseGraphTrans`, tokens and heads), both
  :class:`SparseModel`; :meth:`GTSP.export` returns the smaller model.
"""
from .config import GTSPConfig
from .edge_mask import BilinearEdgeScore, EdgeMask
from .base import SparseModel
from .export import SparseLinear, shrink_mlp, store_sparse
from .graphtrans import SparseGraphTrans
from .gtsp import GTSP
from .heads import HeadPruner
from .layers import LayerPruner
from .model import SparseGPS
from .token_mask import TokenMask
from .topk import group_topk, group_topk_mask
from .weights import WeightPruner, cubic_sparsity, prunable_weights

__all__ = ["GTSPConfig", "GTSP", "SparseModel", "SparseGPS", "SparseGraphTrans", "TokenMask", "EdgeMask",
           "BilinearEdgeScore", "HeadPruner", "LayerPruner", "WeightPruner", "SparseLinear", "shrink_mlp",
           "store_sparse", "group_topk", "group_topk_mask", "cubic_sparsity", "prunable_weights"]
