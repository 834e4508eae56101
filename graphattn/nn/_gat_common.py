r"""What PyG's ``GATConv`` and ``GATv2Conv`` share, on the engine: their arguments and output parameters,
the attention graph (self-loops replaced as PyG does, with the loops' edge features from ``fill_value``),
the combination of the heads with the residual and the bias, and the three forms of
``return_attention_weights``.

The attention graph of a raw ``edge_index`` is built once per tensor (:func:`~graphattn.graph.self_loop_graph`):
a forward pass costs no E-sized index work. The loops' edge features are an :math:`N \times D` computation
(``fill_value``: a constant row, or a reduction of each node's incoming edge features); the edges' own
features are carried over by one gather when the input had self-loops, and by none otherwise.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.utils import scatter

from ..functional import as_attention_graph, attention_weights, graph_attention
from ..graph import AttentionGraph, self_loop_graph
from ._message_passing import EngineMessagePassing

__all__ = ["GATBase", "FILL_REDUCTIONS", "returned_attention"]

#: The reductions ``fill_value`` may name (those of PyG's ``add_self_loops``).
FILL_REDUCTIONS = ("add", "sum", "mean", "min", "max", "mul")

Size = Optional[Tuple[int, int]]


class GATBase(EngineMessagePassing):
    r"""The arguments, output parameters and forward-pass plumbing of PyG's GAT layers.

    Subclasses create their projections and attention parameters between :meth:`_init_options` and
    :meth:`_init_output` (PyG's registration order, so that a seeded construction draws the same
    weights), and compute :math:`\sum_j \alpha_{ij} \mathbf{v}_j` ``[N_dst, H, C]`` on the graph
    :meth:`_attention_graph` gives; :meth:`_finish` then forms PyG's output.
    """

    def _init_options(self, in_channels: Union[int, Tuple[int, int]], out_channels: int, heads: int, concat: bool,
                      negative_slope: float, dropout: float, add_self_loops: bool, edge_dim: Optional[int],
                      fill_value: Union[float, Tensor, str], residual: bool) -> None:
        if heads < 1 or out_channels < 1:
            raise ValueError(f"heads and out_channels must be positive, got {heads} and {out_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if isinstance(fill_value, str) and fill_value not in FILL_REDUCTIONS:
            raise ValueError(f"fill_value must be a number, a tensor or one of {FILL_REDUCTIONS}, got {fill_value!r}")
        if not isinstance(fill_value, (str, int, float, Tensor)):
            raise TypeError(f"fill_value must be a number, a tensor or a reduction name, got "
                            f"{type(fill_value).__name__}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.add_self_loops = add_self_loops
        self.edge_dim = edge_dim
        self.fill_value = fill_value
        self.residual = residual

    def _init_output(self, bias: bool) -> None:
        """PyG's ``res`` (residual projection of the destination features) and ``bias`` of the output."""
        width = self.out_channels * (self.heads if self.concat else 1)
        if self.residual:
            dst_channels = self.in_channels if isinstance(self.in_channels, int) else self.in_channels[1]
            self.res = Linear(dst_channels, width, bias=False, weight_initializer="glorot")
        else:
            self.register_parameter("res", None)
        if bias:
            self.bias = Parameter(torch.empty(width))
        else:
            self.register_parameter("bias", None)

    # ------------------------------------------------------------------ forward pieces
    @staticmethod
    def _node_counts(edge_index: Any, num_src: int, num_dst: Optional[int], size: Size = None) -> Tuple[int, int]:
        """``(N_src, N_dst)``: from ``size`` where given, else the destination features, else the adjacency
        (a sparse one or an :class:`AttentionGraph` knows its sizes), else ``N_src`` (as PyG's ``propagate``)."""
        if size is not None:
            if len(size) != 2 or int(size[0]) != num_src or (num_dst is not None and int(size[1]) != num_dst):
                raise ValueError(f"size must be (num_src_nodes, num_dst_nodes) = ({num_src}, "
                                 f"{'N_dst' if num_dst is None else num_dst}) for these node features, got {size!r}")
            return num_src, int(size[1])
        if num_dst is not None:
            return num_src, num_dst
        if isinstance(edge_index, AttentionGraph):
            return num_src, edge_index.num_dst_nodes
        if _is_sparse_adjacency(edge_index):
            return num_src, int(edge_index.sparse_sizes()[0] if hasattr(edge_index, "sparse_sizes")
                                else edge_index.size(0))
        return num_src, num_src

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, graph: AttentionGraph, need_weights: bool,
                **score: Any) -> Tuple[Tensor, Optional[Tensor]]:
        r""":math:`\sum_j \operatorname{dropout}(\alpha_{ij}) \mathbf{v}_j` ``[N_dst, H, C]`` and, when asked
        (or when PyG's instrumentation needs them), the pre-dropout weights :math:`\alpha` ``[E', H]``: one
        engine call with the layer's score (``score``: the score function and its arguments), or, in
        explain mode and with hooks, the weights on the engine and the messages through PyG's
        ``propagate``."""
        p = self.dropout if self.training else 0.0
        score["negative_slope"] = self.negative_slope
        if self.instrumented:
            alpha = attention_weights(q, k, graph, **score)
            return self.propagate_messages(alpha, v, graph, dropout=p), alpha
        if need_weights:
            return graph_attention(q, k, v, graph, dropout=p, return_weights=True, **score)
        return graph_attention(q, k, v, graph, dropout=p, **score), None

    def _attention_graph(self, edge_index: Any, edge_attr: Optional[Tensor], num_src: int,
                         num_dst: int) -> Tuple[AttentionGraph, Optional[Tensor]]:
        r"""The attention graph and its edge features ``[E', D]`` (``None`` without ``edge_attr``): with
        ``add_self_loops``, the input's edges minus its self-loops, then a loop for every
        :math:`i < \min(N_{src}, N_{dst})` whose features come from ``fill_value``."""
        if isinstance(edge_index, Tensor) and not _is_sparse_adjacency(edge_index):
            edges: Any = edge_index
        else:                       # an AttentionGraph or a sparse [N_dst, N_src] adjacency
            if hasattr(edge_index, "sparse_sizes") and self.add_self_loops and self.edge_dim is not None:
                raise NotImplementedError("The usage of 'edge_attr' and 'add_self_loops' simultaneously is "
                                          "currently not yet supported for 'edge_index' in a 'SparseTensor' form")
            edges = as_attention_graph(edge_index, num_dst, num_src)
            if (edges.num_src_nodes, edges.num_dst_nodes) != (num_src, num_dst):
                raise ValueError(f"the adjacency is [{edges.num_dst_nodes}, {edges.num_src_nodes}] "
                                 f"([N_dst, N_src]) but the node features give [{num_dst}, {num_src}]")
            if edge_attr is None and self.edge_dim is not None:
                edge_attr = edges.edge_weight       # edge features carried as the adjacency's values
        if edge_attr is not None:
            if self.edge_dim is None:
                raise ValueError("edge_attr was given but the layer has no edge_dim")
            edge_attr = edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr
            num_edges = edges.size(1) if isinstance(edges, Tensor) else edges.num_edges
            if edge_attr.size(0) != num_edges:
                raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but the graph has {num_edges} edges")
        raw = edges if isinstance(edges, Tensor) else edges.edge_index
        if not self.add_self_loops:
            graph = as_attention_graph(edges, num_dst, num_src)
            return graph, edge_attr
        loops = self_loop_graph(raw, num_src, num_dst)
        if edge_attr is None:
            return loops.graph, None
        kept_attr = edge_attr if loops.kept is None else edge_attr.index_select(0, loops.kept)
        dst = loops.graph.edge_index[1, :loops.num_kept]
        loop_attr = self._loop_attr(kept_attr, dst, num_dst, min(num_src, num_dst))
        return loops.graph, torch.cat([kept_attr, loop_attr], dim=0)

    def _loop_attr(self, edge_attr: Tensor, dst: Tensor, num_dst: int, num_loops: int) -> Tensor:
        r"""The self-loops' features ``[L, D]`` from ``fill_value``, as PyG's ``add_self_loops``: the
        constant (a number or a tensor), or the reduction of each node's incoming edge features (0 for a
        node without any)."""
        fill = self.fill_value
        if isinstance(fill, str):
            return scatter(edge_attr, dst, 0, num_dst, reduce=fill)[:num_loops]
        if isinstance(fill, Tensor):
            fill = fill.to(edge_attr.device, edge_attr.dtype)
            fill = fill.unsqueeze(0) if fill.dim() != edge_attr.dim() else fill
            return fill.expand((num_loops,) + tuple(edge_attr.shape[1:])).contiguous()
        return edge_attr.new_full((num_loops,) + tuple(edge_attr.shape[1:]), float(fill))

    def _finish(self, out: Tensor, res: Optional[Tensor]) -> Tensor:
        """Heads concatenated or averaged, then the residual and the bias (PyG's order)."""
        out = out.reshape(-1, self.heads * self.out_channels) if self.concat else out.mean(dim=1)
        if res is not None:
            out = out + res
        if self.bias is not None:
            out = out + self.bias
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, heads={self.heads})"


def _is_sparse_adjacency(edge_index: Any) -> bool:
    """A ``torch.sparse`` tensor or a ``torch_sparse.SparseTensor`` (neither an ``edge_index`` nor an
    ``AttentionGraph``)."""
    if isinstance(edge_index, Tensor):
        return edge_index.layout != torch.strided
    return hasattr(edge_index, "sparse_sizes")


def returned_attention(edge_index: Any, graph: AttentionGraph, alpha: Tensor) -> Any:
    r"""``return_attention_weights`` as PyG's GAT layers give it for the input form of ``edge_index``:
    ``(edge_index', alpha)`` for an ``edge_index`` (or an :class:`AttentionGraph`), with the attention
    graph's edges; for a sparse adjacency the attention graph's adjacency with ``alpha`` ``[E', H]`` as
    values, in row-major order (``(adj, alpha)`` for ``torch.sparse`` in the input's layout, the
    ``SparseTensor`` alone for a ``SparseTensor``)."""
    if not _is_sparse_adjacency(edge_index):
        return graph.edge_index, alpha
    src, dst = graph.edge_index
    order = torch.argsort(dst * graph.num_src_nodes + src)
    src, dst, alpha = src[order], dst[order], alpha[order]
    sizes = (graph.num_dst_nodes, graph.num_src_nodes)
    if not isinstance(edge_index, Tensor):                  # torch_sparse.SparseTensor
        return type(edge_index)(row=dst, col=src, value=alpha, sparse_sizes=sizes, is_sorted=True)
    adj = torch.sparse_coo_tensor(torch.stack([dst, src]), alpha, sizes + tuple(alpha.shape[1:]),
                                  is_coalesced=True, check_invariants=False)
    if edge_index.layout == torch.sparse_csr:
        adj = adj.to_sparse_csr()
    elif edge_index.layout == torch.sparse_csc:
        adj = adj.to_sparse_csc()
    return adj, alpha
