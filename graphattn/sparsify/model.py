r"""SparseGPS: a :class:`~graphattn.models.GPS` run with GTSP's masks (training) or with the
pruned parts removed (the exported model)."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..models.gps import GPS, LayerMasks
from ..nn.gps_layer import AttentionMasks
from ..nn.multihead_attention import MultiheadGraphAttention
from .base import SparseModel
from .config import GTSPConfig
from .edge_mask import EdgeMask

__all__ = ["SparseGPS"]


def _edge_subgraph(graph: AttentionGraph, keep: Tensor) -> AttentionGraph:
    """The edges ``keep`` of a graph whose user order is its CSR order (as ``full_per_graph``'s)."""
    col, row = graph.edge_index[:, keep]
    return AttentionGraph.from_sorted_rows(row, col, graph.num_src_nodes, graph.num_dst_nodes, validate=False)


class SparseGPS(SparseModel):
    r"""A GPS model with the four GTSP components (:class:`~graphattn.sparsify.GTSPConfig`).

    **Masked mode** (``structural=False``, training and the reference): everything is computed and
    multiplied by masks — the global attention of layer :math:`l` runs on the full per-graph
    attention graph with the edge mask :math:`m_{ij} = t_i t_j e_{ij}` (token mask :math:`t`,
    edge mask :math:`e`), head mask :math:`\mathbf{m}^{(l)}_{head}`, and output scale
    :math:`g_l \cdot t_i \cdot \text{drop-path}` (layer gate :math:`g_l`). The masks carry
    straight-through gradients; ``head_mask`` and ``layer_gate`` also receive gradients (their
    importance scores) through ``live_head_mask`` and ``live_layer_gate``.

    **Structural mode** (``structural=True``, what :meth:`GTSP.export` returns): pruned tokens and
    edges are not in the attention graph (``full_per_graph`` over the kept tokens, then a smaller
    CSR), pruned heads are gone from the projections, removed attention blocks are ``None``.
    Evaluation outputs equal the masked mode's.

    It runs the GPS model's own forward with itself as the per-layer mask provider
    (:meth:`masks_for_batch`, a ``MaskProvider``): ``self(...)`` is
    ``model(..., masks=self.masks_for_batch)``. The token scorer and head masks are
    :class:`~graphattn.sparsify.SparseModel`'s.

    Args:
        model: the :class:`~graphattn.models.GPS` (``attn_type="multihead"``), used in place.
        config: the GTSP configuration.
    """

    def __init__(self, model: GPS, config: GTSPConfig):
        if not isinstance(model, GPS):
            raise TypeError(f"model must be a graphattn.models.GPS, got {type(model).__name__}")
        if model.attn_type != "multihead":
            raise ValueError(f"GTSP needs attn_type='multihead', got {model.attn_type!r}")
        channels = model.layers[0].channels
        super().__init__(model, config, channels, len(model.layers), model.layers[0].attn.num_heads)
        self.edge_mask = (EdgeMask(channels, config.edge_ratio, config.edge_rank, config.tau)
                          if config.prunes_edges else None)
        self.register_buffer("layer_gate", torch.ones(len(model.layers)))
        self.live_layer_gate: Optional[Tensor] = None

    def attention_blocks(self) -> List[Optional[MultiheadGraphAttention]]:
        return [layer.attn for layer in self.model.layers]

    def attention_inputs(self, h: Tensor, batch: Tensor, num_graphs: int
                         ) -> Tuple[Optional[Tensor], AttentionGraph, Optional[Tensor], Optional[Tensor]]:
        """``(nodes, attention graph, edge mask, token mask)`` of the batch's global attention: the
        kept tokens in structural mode (with a token mask), the masks in masked mode; ``None`` where
        unused."""
        graph = AttentionGraph.full_per_graph(batch, num_graphs)
        if self.structural:
            nodes = None
            if self.token_mask is not None:
                nodes = self.token_mask.select(h, batch, num_graphs).nonzero().view(-1)
                h, batch = h[nodes], batch[nodes]
                graph = AttentionGraph.full_per_graph(batch, num_graphs)
            if self.edge_mask is not None:
                graph = _edge_subgraph(graph, self.edge_mask.select(h, graph, batch, num_graphs))
            return nodes, graph, None, None
        tokens = self.token_mask(h, batch, num_graphs) if self.token_mask is not None else None
        src, dst = graph.edge_index
        edges = None if tokens is None else tokens[src] * tokens[dst]
        if self.edge_mask is not None:
            valid = None if edges is None else edges.detach() > 0
            mask = self.edge_mask(h, graph, batch, num_graphs, valid)
            edges = mask if edges is None else edges * mask
        return None, graph, edges, tokens

    def _attn_scale(self, layer: int, tokens: Optional[Tensor], batch: Tensor, num_graphs: int) -> Tensor:
        gate = self.live_layer_gate if self.live_layer_gate is not None else self.layer_gate
        scale = gate[layer]
        p = self.config.drop_path if self.config.prunes_layers else 0.0
        if self.training and p > 0:
            keep = torch.rand(num_graphs, device=batch.device) >= p
            scale = scale * (keep.to(gate.dtype) / (1 - p))[batch]
        if tokens is not None:
            scale = scale * tokens
        return scale

    def masks_for_batch(self, h: Tensor, batch: Tensor, num_graphs: int) -> LayerMasks:
        """The masks of the batch whose encoded node states are ``h`` ``[N, C]``, layer by layer
        (the GPS body calls the result with each layer's index just before the layer runs)."""
        nodes, graph, edges, tokens = self.attention_inputs(h, batch, num_graphs)
        heads = self.heads_for_batch()
        self.live_layer_gate = (self.layer_gate.clone().requires_grad_(True) if self.live_head_mask is not None
                                else None)
        if self.structural:
            masks = None if nodes is None else AttentionMasks(nodes=nodes)
            return lambda layer: (graph, masks)
        return lambda layer: (graph, AttentionMasks(edge_mask=edges, head_mask=heads[layer],
                                                    scale=self._attn_scale(layer, tokens, batch, num_graphs)))

    @torch.no_grad()
    def make_structural(self) -> None:
        """Removes what the masks prune, in place: attention blocks with gate 0, heads with mask 0."""
        for i, layer in enumerate(self.model.layers):
            if float(self.layer_gate[i]) == 0.0:
                layer.attn, layer.heads = None, 0
        super().make_structural()
        for layer in self.model.layers:
            if layer.attn is not None:
                layer.heads = layer.attn.num_heads
        self.live_layer_gate = None
