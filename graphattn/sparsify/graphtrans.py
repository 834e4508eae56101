r"""SparseGraphTrans: a :class:`~graphattn.models.GraphTrans` run with GTSP's token and head masks, the pruned
tokens out of the transformer."""
from __future__ import annotations

from typing import List, Optional

from torch import Tensor

from ..models.graphtrans import GraphTrans, TokenMasks
from ..nn.multihead_attention import MultiheadGraphAttention
from .base import SparseModel
from .config import GTSPConfig

__all__ = ["SparseGraphTrans"]

#: GTSP components that do not apply to GraphTrans (its transformer is one block after the GNN)
_NOT_FOR_GRAPHTRANS = ("edge_ratio", "layer_keep", "weight_density")


class SparseGraphTrans(SparseModel):
    r"""GraphTrans with GTSP's input-token and head components (:class:`~graphattn.sparsify.GTSPConfig`
    ``token_ratio``, ``head_density``).

    **Tokens.** Every node token is scored from the GNN's output, :math:`s_i = \mathbf{w}^\top\mathbf{h}_i + b`,
    and each graph keeps its :math:`k_g = \lceil r\, n_g\rceil` best nodes
    (:class:`~graphattn.sparsify.TokenMask`). The ``<CLS>`` token is never scored and never pruned: it is
    appended after the selection. The pruned nodes are *removed* from the transformer (and from the
    projection to its width) in training as well as in the exported model; in training the kept nodes' states
    are multiplied by their straight-through Gumbel top-k mask values :math:`y_i` (1 in value), so the scorer
    learns through :math:`\partial y_i / \partial s_j` (the softmax over the graph's nodes, pruned ones
    included). GTSP's released code instead multiplies every token by its 0/1 mask and still attends over all
    of them (no saving); with the mask on the attention edges, :math:`m_{ij} = y_i y_j`, the forward values
    are the same as removal, only the pruned nodes' :math:`\partial\mathcal L/\partial y_j` (0 here) differs.
    In evaluation the selection is deterministic (no noise, no scaling).

    **Heads.** ``head_mask`` ``[L, H]`` scales the heads of the transformer's layers
    (:class:`~graphattn.sparsify.HeadPruner` updates it; masked model);
    :meth:`~graphattn.sparsify.SparseModel.make_structural` removes the pruned heads from the projections.

    Edge masks, layer removal and weight pruning (GTSP's other components) are not offered for GraphTrans:
    their config values must stay 1.

    Args:
        model: the :class:`~graphattn.models.GraphTrans`, used in place; config: the GTSP configuration.
    """

    def __init__(self, model: GraphTrans, config: GTSPConfig):
        if not isinstance(model, GraphTrans):
            raise TypeError(f"model must be a graphattn.models.GraphTrans, got {type(model).__name__}")
        for name in _NOT_FOR_GRAPHTRANS:
            if getattr(config, name) < 1.0:
                raise ValueError(f"{name}: GTSP on GraphTrans prunes tokens and heads only; {name} must be 1, "
                                 f"got {getattr(config, name)}")
        first = model.transformer.layers[0].self_attn
        super().__init__(model, config, model.gnn2transformer.in_features, len(model.transformer.layers),
                         first.num_heads)

    def attention_blocks(self) -> List[Optional[MultiheadGraphAttention]]:
        return [layer.self_attn for layer in self.model.transformer.layers]

    def masks_for_batch(self, h: Tensor, batch: Tensor, num_graphs: int) -> TokenMasks:
        """The kept nodes of the batch whose GNN states are ``h`` ``[N, channels]``, their straight-through
        scale (masked training) and the head masks (masked model, when heads are pruned)."""
        heads = self.heads_for_batch() if self.config.prunes_heads and not self.structural else None
        if self.token_mask is None:
            return TokenMasks(head_masks=heads)
        if self.training and not self.structural:
            mask = self.token_mask(h, batch, num_graphs)                    # [N], 0/1 in value
            nodes = (mask.detach() > 0).nonzero().view(-1)
            return TokenMasks(nodes=nodes, scale=mask.index_select(0, nodes), head_masks=heads)
        return TokenMasks(nodes=self.token_mask.select(h, batch, num_graphs).nonzero().view(-1), head_masks=heads)
