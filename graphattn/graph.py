r"""The attention graph: which source node :math:`j` each destination node :math:`i` attends to.

:class:`AttentionGraph` is the user-facing graph of graphattn. It is built from whatever a
PyG, PyTorch, networkx or DGL user holds, validates it once, and owns the CSR (by
destination, with its cached transpose) that the engine runs on.

Orientation: edges are :math:`j \to i` with PyG's ``edge_index[0] = j`` (source, the key /
value side) and ``edge_index[1] = i`` (destination, the query side). As a matrix, the
graph is the ``[num_dst_nodes, num_src_nodes]`` attention mask: entry ``(i, j)`` is set when
``i`` attends to ``j`` — the same orientation as PyG's ``adj_t`` and as the ``attn_mask`` of
:func:`torch.nn.functional.scaled_dot_product_attention`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor

from sparse_kernels import prepare
from sparse_kernels.csr import (CSR, block_diagonal_full, build_csr, csr_from_sorted_rows, node_count,
                                validate_edge_index)

__all__ = ["AttentionGraph", "cached_graph", "SelfLoopGraph", "self_loop_graph"]


def _cache_key(t: Tensor, *sizes: Optional[int]) -> tuple:
    try:
        version = t._version
    except RuntimeError:          # inference tensors keep no version counter
        version = 0
    return (version, *sizes)


def _lookup(t: Tensor, attr: str, key: tuple) -> Any:
    if torch.compiler.is_compiling():
        return None
    cached = getattr(t, attr, None)
    return cached[1] if cached is not None and cached[0] == key else None


def _store(t: Tensor, attr: str, key: tuple, value: Any) -> None:
    if torch.compiler.is_compiling():
        return
    try:
        setattr(t, attr, (key, value))
    except (AttributeError, RuntimeError):   # a tensor that takes no attributes: no cache
        pass


def cached_graph(edge_index: Tensor, num_src_nodes: int, num_dst_nodes: Optional[int] = None) -> "AttentionGraph":
    """The :class:`AttentionGraph` of a raw ``edge_index``, validated and built once per tensor.

    The CSR (with its transpose and kernel schedules) is cached on the ``edge_index`` tensor itself,
    keyed by the node counts and the tensor's version counter (an in-place change rebuilds it), so
    every layer of a forward pass, and its backward, share one graph and the per-layer cost is a
    lookup: no validation, no sort, no host synchronisation. Inside ``torch.compile`` nothing is
    cached (the graph is built in the traced code)."""
    num_dst_nodes = num_src_nodes if num_dst_nodes is None else num_dst_nodes
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if torch.compiler.is_compiling():
        return AttentionGraph(edge_index, num_src_nodes, num_dst_nodes)
    num_src_nodes = node_count("num_src_nodes", num_src_nodes)
    num_dst_nodes = node_count("num_dst_nodes", num_dst_nodes)
    key = _cache_key(edge_index, num_src_nodes, num_dst_nodes)
    csr = _lookup(edge_index, "_graphattn_csr", key)
    if csr is not None:
        return AttentionGraph(edge_index, num_src_nodes, num_dst_nodes, validate=False, _csr=csr)
    graph = AttentionGraph(edge_index, num_src_nodes, num_dst_nodes)
    _store(edge_index, "_graphattn_csr", key, graph.csr)
    return graph


class SelfLoopGraph(NamedTuple):
    """An ``edge_index`` with its self-loops replaced, in PyG's order (:func:`self_loop_graph`)."""

    graph: "AttentionGraph"
    """The edges of the input that are not self-loops, in their order, then the loops ``(i, i)`` for
    ``i < min(num_src_nodes, num_dst_nodes)``."""
    kept: Optional[Tensor]
    """``[E']`` input positions of the edges kept (``None``: the input had no self-loop, all are kept),
    to carry per-edge tensors over: ``x[kept]``."""

    @property
    def num_kept(self) -> int:
        """Number of input edges in :attr:`graph` (the loops follow them)."""
        return self.graph.num_edges - min(self.graph.num_src_nodes, self.graph.num_dst_nodes)


def self_loop_graph(edge_index: Tensor, num_src_nodes: int, num_dst_nodes: Optional[int] = None) -> SelfLoopGraph:
    r"""The graph of PyG's ``remove_self_loops`` then ``add_self_loops`` (GATConv's attention graph):
    the input edges :math:`j \to i` with :math:`j \ne i` in their order, then one loop :math:`i \to i` for
    every :math:`i < \min(N_{src}, N_{dst})`.

    Like ``cached_graph``, the result (edge list, kept positions and CSR) is built and validated once
    per ``edge_index`` tensor and cached on it, keyed by the node counts and the tensor's version counter:
    later calls are a lookup, with no E-sized work and no host synchronisation. Inside ``torch.compile``
    nothing is cached (and :attr:`SelfLoopGraph.kept` is always given)."""
    num_dst_nodes = num_src_nodes if num_dst_nodes is None else num_dst_nodes
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    compiling = torch.compiler.is_compiling()
    if not compiling:
        num_src_nodes = node_count("num_src_nodes", num_src_nodes)
        num_dst_nodes = node_count("num_dst_nodes", num_dst_nodes)
        key = _cache_key(edge_index, num_src_nodes, num_dst_nodes)
        cached = _lookup(edge_index, "_graphattn_self_loops", key)
        if cached is not None:
            loop_edges, kept, csr = cached
            return SelfLoopGraph(AttentionGraph(loop_edges, num_src_nodes, num_dst_nodes, validate=False, _csr=csr),
                                 kept)
        validate_edge_index(edge_index, num_src_nodes, num_dst_nodes)
    edges = edge_index.long()
    is_loop = edges[0] == edges[1]
    kept = None if not compiling and not bool(is_loop.any()) else (~is_loop).nonzero().view(-1)
    loops = torch.arange(min(num_src_nodes, num_dst_nodes), device=edges.device).expand(2, -1)
    loop_edges = torch.cat([edges if kept is None else edges.index_select(1, kept), loops], dim=1)
    graph = AttentionGraph(loop_edges, num_src_nodes, num_dst_nodes, validate=False)
    if not compiling:
        _store(edge_index, "_graphattn_self_loops", key, (loop_edges, kept, graph.csr))
    return SelfLoopGraph(graph, kept)


class AttentionGraph:
    r"""A directed attention graph over ``num_src_nodes`` keys and ``num_dst_nodes`` queries.

    Args:
        edge_index: ``[2, E]`` integer tensor, row 0 sources, row 1 destinations.
        num_src_nodes: number of source (key/value) nodes.
        num_dst_nodes: number of destination (query) nodes; defaults to ``num_src_nodes``.
        edge_weight: optional per-edge values ``[E]`` or ``[E, H]`` carried with the graph
            (for weighted graphs such as a pretrained model's attention probabilities).
        validate: check indices (dtype, shape, range) before anything else runs.
        sorted_by_dst: the edges are already grouped by destination (``edge_index[1]``
            non-decreasing), so the CSR is built without a sort and the user's edge order is the
            engine's (not checked; :meth:`from_sorted_rows` checks it).

    The CSR is built on first use and cached on the graph; layers given a raw ``edge_index`` share
    one graph per tensor (``cached_graph``).
    """

    def __init__(self, edge_index: Tensor, num_src_nodes: int, num_dst_nodes: Optional[int] = None,
                 edge_weight: Optional[Tensor] = None, validate: bool = True, sorted_by_dst: bool = False,
                 _csr: Optional[CSR] = None):
        num_dst_nodes = num_src_nodes if num_dst_nodes is None else num_dst_nodes
        if not torch.compiler.is_compiling():
            num_src_nodes = node_count("num_src_nodes", num_src_nodes)
            num_dst_nodes = node_count("num_dst_nodes", num_dst_nodes)
            if validate:
                validate_edge_index(edge_index, num_src_nodes, num_dst_nodes)
        if edge_weight is not None:
            if not isinstance(edge_weight, Tensor) or edge_weight.dim() not in (1, 2) \
                    or edge_weight.size(0) != edge_index.size(1):
                raise ValueError(f"edge_weight must have shape [E] or [E, H] with E={edge_index.size(1)}")
            if edge_weight.device != edge_index.device:
                raise ValueError("edge_weight and edge_index must be on the same device")
        self._edge_index = edge_index.long()
        self.num_src_nodes = int(num_src_nodes)
        self.num_dst_nodes = int(num_dst_nodes)
        self.edge_weight = edge_weight
        self._csr = _csr
        self._sorted_by_dst = sorted_by_dst

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: Optional[int] = None,
                        num_dst_nodes: Optional[int] = None,
                        edge_weight: Optional[Tensor] = None) -> "AttentionGraph":
        """From a PyG ``edge_index`` ``[2, E]``.

        ``num_nodes`` is the number of source nodes (and of destination nodes unless
        ``num_dst_nodes`` is given); inferred as ``max(edge_index) + 1`` when omitted.
        """
        if num_nodes is None:
            if not isinstance(edge_index, Tensor):
                raise TypeError(f"edge_index must be a torch.Tensor, got {type(edge_index).__name__}")
            if num_dst_nodes is None:
                num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
            else:
                num_nodes = int(edge_index[0].max()) + 1 if edge_index.numel() else 0
        return cls(edge_index, num_nodes, num_dst_nodes, edge_weight=edge_weight)

    @classmethod
    def from_sorted_rows(cls, row: Tensor, col: Tensor, num_src_nodes: int, num_dst_nodes: Optional[int] = None,
                         validate: bool = True) -> "AttentionGraph":
        """From edges already grouped by destination: ``row`` ``[E]`` (destinations, non-decreasing)
        and ``col`` ``[E]`` (sources). The user's edge order is then the engine's CSR order, so no
        sort runs and no per-edge tensor is ever permuted.

        Raises:
            ValueError: ``row`` is not sorted or an index is out of range (with ``validate``).
        """
        num_dst_nodes = num_src_nodes if num_dst_nodes is None else num_dst_nodes
        if not isinstance(row, Tensor) or not isinstance(col, Tensor) or row.shape != col.shape or row.dim() != 1:
            raise ValueError("row and col must be 1-D tensors of the same length")
        edge_index = torch.stack([col, row])
        if validate and not torch.compiler.is_compiling():
            validate_edge_index(edge_index, num_src_nodes, num_dst_nodes)
            if row.numel() > 1 and bool((row[1:] < row[:-1]).any()):
                raise ValueError("row must be sorted (non-decreasing): edges grouped by destination")
        return cls(edge_index, num_src_nodes, num_dst_nodes, validate=False, sorted_by_dst=True)

    @classmethod
    def from_data(cls, data: Any) -> "AttentionGraph":
        """From a PyG ``Data`` or ``Batch`` (uses ``edge_index`` or ``adj_t``, and ``num_nodes``)."""
        adj_t = getattr(data, "adj_t", None)
        if adj_t is not None:
            return cls.from_sparse(adj_t)
        edge_index = getattr(data, "edge_index", None)
        if edge_index is None:
            raise ValueError("data has neither edge_index nor adj_t")
        return cls(edge_index, data.num_nodes)

    @classmethod
    def from_sparse(cls, adj: Any) -> "AttentionGraph":
        """From a sparse ``[num_dst_nodes, num_src_nodes]`` matrix (entry ``(i, j)``: ``i`` attends to ``j``).

        Accepts ``torch.sparse`` COO/CSR/CSC tensors and PyG/torch-sparse ``SparseTensor``
        (as PyG's ``adj_t``). Stored values become ``edge_weight``: ``[E]`` weights (dropped when all
        ones) or ``[E, F]`` edge features of a hybrid tensor (PyG's ``ToSparseTensor(attr="edge_attr")``).
        """
        if isinstance(adj, Tensor) and adj.is_sparse or (
                isinstance(adj, Tensor) and adj.layout in (torch.sparse_csr, torch.sparse_csc)):
            coo = adj.to_sparse_coo().coalesce()
            dst, src = coo.indices()
            values = coo.values()
            num_dst, num_src = adj.shape[0], adj.shape[1]
        elif hasattr(adj, "coo") and hasattr(adj, "sparse_sizes"):  # torch_sparse.SparseTensor
            dst, src, values = adj.coo()
            num_dst, num_src = adj.sparse_sizes()
        else:
            raise TypeError(f"adj must be a torch sparse tensor or SparseTensor, got {type(adj).__name__}")
        weight = None if values is None or values.dtype == torch.bool else values
        if weight is not None and weight.dim() == 1 and bool((weight == 1).all()):
            weight = None                      # a plain adjacency; [E, F] values are edge features
        return cls(torch.stack([src, dst]), num_src, num_dst, edge_weight=weight)

    @classmethod
    def from_networkx(cls, graph: Any, weight: Optional[str] = None) -> "AttentionGraph":
        """From a networkx graph; nodes are numbered in ``graph.nodes`` order.

        Undirected graphs give both directions of every edge; ``weight`` names an edge
        attribute to carry as ``edge_weight``.
        """
        index = {node: i for i, node in enumerate(graph.nodes)}
        pairs = [(index[u], index[v], d) for u, v, d in graph.edges(data=True)]
        if not graph.is_directed():
            pairs += [(v, u, d) for u, v, d in pairs if u != v]
        edge_index = torch.tensor([[u for u, _, _ in pairs], [v for _, v, _ in pairs]],
                                  dtype=torch.long).reshape(2, -1)
        edge_weight = None
        if weight is not None:
            edge_weight = torch.tensor([float(d.get(weight, 1.0)) for _, _, d in pairs])
        return cls(edge_index, len(index), edge_weight=edge_weight)

    @classmethod
    def from_dgl(cls, g: Any) -> "AttentionGraph":
        """From a DGL graph or message-flow block (duck-typed: DGL need not be installed)."""
        src, dst = g.edges()
        if hasattr(g, "num_src_nodes"):
            num_src, num_dst = int(g.num_src_nodes()), int(g.num_dst_nodes())
        else:
            num_src = num_dst = int(g.num_nodes())
        return cls(torch.stack([torch.as_tensor(src), torch.as_tensor(dst)]), num_src, num_dst)

    @classmethod
    def full_per_graph(cls, batch: Tensor, num_graphs: Optional[int] = None) -> "AttentionGraph":
        r"""Full attention within each graph of a batch, as one block-diagonal graph.

        Args:
            batch: ``[N]`` graph id of every node (PyG's ``batch`` vector), non-decreasing.
            num_graphs: number of graphs (default ``batch.max() + 1``).

        The graph has :math:`\sum_g n_g^2` edges, built directly in CSR order (no sort), and is
        marked block-diagonal full, so that the engine may run it as dense blocks. Built once per
        ``batch`` tensor (cached on it like ``cached_graph``).
        """
        if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.dtype.is_floating_point:
            raise TypeError("batch must be a 1-D integer tensor of graph ids")
        key = _cache_key(batch, None if num_graphs is None else int(num_graphs))
        csr = _lookup(batch, "_graphattn_full_csr", key)
        if csr is None:
            batch_long = batch.long()
            n = batch_long.numel()
            if n and not torch.compiler.is_compiling() and bool((batch_long[1:] < batch_long[:-1]).any()):
                raise ValueError("batch must be sorted (non-decreasing), as in a PyG Batch")
            if num_graphs is None:
                num_graphs = int(batch_long.max()) + 1 if n else 0
            sizes = torch.zeros(num_graphs, dtype=torch.long, device=batch.device)
            sizes.scatter_add_(0, batch_long, torch.ones_like(batch_long))
            csr = prepare(block_diagonal_full(sizes, n))
            _store(batch, "_graphattn_full_csr", key, csr)
        n = csr.num_dst_nodes
        return cls(torch.stack([csr.col, csr.row]), n, n, validate=False, _csr=csr)

    # ------------------------------------------------------------------ properties
    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` in the user's edge order."""
        return self._edge_index

    @property
    def num_edges(self) -> int:
        return self._edge_index.size(1)

    @property
    def device(self) -> torch.device:
        return self._edge_index.device

    @property
    def is_bipartite(self) -> bool:
        return self.num_src_nodes != self.num_dst_nodes

    @property
    def csr(self) -> CSR:
        """The destination-major CSR (built once, cached), with everything the engine derives from it
        (:func:`sparse_kernels.prepare`): later calls on the graph never synchronise with the device."""
        if self._csr is None:
            if self._sorted_by_dst:
                csr = csr_from_sorted_rows(self._edge_index[1], self._edge_index[0], self.num_src_nodes,
                                           self.num_dst_nodes)
            else:
                csr = build_csr(self._edge_index, self.num_src_nodes, self.num_dst_nodes, validate=False)
            self._csr = prepare(csr)
        return self._csr

    def in_degree(self) -> Tensor:
        """``[num_dst_nodes]`` number of in-edges of every destination."""
        return self.csr.degree()

    # ------------------------------------------------------------------ edge-order helpers
    def to_csr_order(self, x: Tensor) -> Tensor:
        """Per-edge tensor ``[E, ...]`` in the user's order -> CSR order."""
        return self.csr.to_csr_order(x)

    def to_user_order(self, x: Tensor) -> Tensor:
        """Per-edge tensor ``[E, ...]`` in CSR order -> the user's order."""
        return self.csr.to_user_order(x)

    # ------------------------------------------------------------------ conversions
    def to_dense(self) -> Tensor:
        """``[num_dst_nodes, num_src_nodes]`` boolean mask, True where an edge j -> i exists."""
        mask = torch.zeros(self.num_dst_nodes, self.num_src_nodes, dtype=torch.bool, device=self.device)
        mask[self._edge_index[1], self._edge_index[0]] = True
        return mask

    def to(self, device: torch.device | str) -> "AttentionGraph":
        return AttentionGraph(self._edge_index.to(device), self.num_src_nodes, self.num_dst_nodes,
                              None if self.edge_weight is None else self.edge_weight.to(device),
                              validate=False, _csr=None if self._csr is None else self._csr.to(device))

    def with_edge_weight(self, edge_weight: Optional[Tensor]) -> "AttentionGraph":
        """The same graph (sharing its CSR) with other per-edge values ``[E]`` / ``[E, H]``."""
        return AttentionGraph(self._edge_index, self.num_src_nodes, self.num_dst_nodes, edge_weight=edge_weight,
                              validate=False, _csr=self.csr)

    @property
    def is_block_diagonal_full(self) -> bool:
        """Whether the graph is full attention within consecutive node blocks (:meth:`full_per_graph`)."""
        return self._csr is not None and self._csr.block_sizes is not None

    def __repr__(self) -> str:
        kind = "bipartite, " if self.is_bipartite else ""
        return (f"AttentionGraph({kind}num_src_nodes={self.num_src_nodes}, "
                f"num_dst_nodes={self.num_dst_nodes}, num_edges={self.num_edges})")
