r"""GraphTrans (Wu et al., NeurIPS 2021): a GNN, then a transformer over each graph's nodes and a ``<CLS>`` token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..graph import AttentionGraph
from ..nn.transformer_encoder import GraphTransformerEncoder
from .heads import PredictionHead
from .mpnn_virtual_node import MPNNVirtualNode

__all__ = ["GraphTrans", "TokenMasks", "TokenMaskProvider", "with_cls_tokens", "GNNS"]

#: GraphTrans's ``gnn_type`` -> the :class:`~graphattn.models.LocalConv` kind of its ``modules/conv.py`` layer
GNNS = {"gcn": "ogb_gcn", "gin": "gin"}


@dataclass(frozen=True)
class TokenMasks:
    r"""What restricts and weights the transformer of a :class:`GraphTrans` for one batch, all optional:

    .. math::
        \mathbf{t}_g = \big[s_i\, \mathbf{W}_{g2t}\mathbf{h}_i\big]_{i \in g \cap \mathcal T} \,\|\, \mathbf{c}

    (before the input LayerNorm); the ``<CLS>`` token :math:`\mathbf{c}` is always in the sequence.

    Attributes:
        nodes: ``[N']`` the node tokens :math:`\mathcal T` that enter the transformer (sorted; ``None``: all);
            the others are not computed at all.
        scale: ``[N']`` :math:`s_i`, multiplying the kept nodes' GNN states (GTSP's straight-through token mask,
            1 in value; ``None``: none).
        head_masks: ``[L, H]`` the head mask of every transformer layer (``None``: all heads).
    """

    nodes: Optional[Tensor] = None
    scale: Optional[Tensor] = None
    head_masks: Optional[Tensor] = None


#: A provider of ``TokenMasks``: called once per forward with the GNN's node states ``h`` ``[N, channels]``,
#: ``batch`` ``[N]`` and the number of graphs. GTSP's :class:`~graphattn.sparsify.SparseGraphTrans` is one.
TokenMaskProvider = Callable[[Tensor, Tensor, int], TokenMasks]


def with_cls_tokens(h: Tensor, cls: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""The token sequence of every graph: its nodes in order, then its ``<CLS>`` token (appended last, as
    GraphTrans does).

    Args:
        h: ``[N, C]`` node states; cls: ``[C]`` the ``<CLS>`` embedding; batch: ``[N]`` graph of every node
            (sorted, as in a PyG batch); num_graphs: :math:`G`.

    Returns:
        ``(tokens, token_batch, cls_rows)``: ``[N + G, C]`` the tokens of graph 0, then of graph 1, ...;
        ``[N + G]`` the graph of every token (sorted); ``[G]`` the row of every graph's ``<CLS>`` token.
    """
    n, device = h.size(0), h.device
    graphs = torch.arange(num_graphs, device=device)
    sizes = torch.zeros(num_graphs, dtype=torch.long, device=device).scatter_add_(0, batch, torch.ones_like(batch))
    cls_rows = sizes.cumsum(0) + graphs                      # the graphs before g add their CLS tokens
    source = torch.empty(n + num_graphs, dtype=torch.long, device=device)
    source[torch.arange(n, device=device) + batch] = torch.arange(n, device=device)
    source[cls_rows] = n + graphs
    tokens = torch.cat([h, cls.expand(num_graphs, -1)]).index_select(0, source)
    return tokens, torch.cat([batch, graphs]).index_select(0, source), cls_rows


class GraphTrans(MPNNVirtualNode):
    r"""GraphTrans (`Wu et al., "Representing Long-Range Context for Graph Neural Networks with Global
    Attention", NeurIPS 2021 <https://arxiv.org/abs/2201.08821>`_), as its code (ucbrise/graphtrans,
    ``models/gnn_transformer.py`` with ``graph_pooling: cls``) builds it:

    .. math::
        \mathbf{h} = \operatorname{GNN}(\mathbf{W}_{in}\mathbf{x}),\qquad
        \mathbf{t}_g = \operatorname{LN}_{in}\big([\mathbf{W}_{g2t}\mathbf{h}_i]_{i \in g} \,\|\,
        \mathbf{c}\big),\qquad
        \hat{\mathbf{y}}_g = \mathbf{W}_{out}\operatorname{LN}\big(\operatorname{Transformer}(\mathbf{t}_g)
        \big)_{\text{CLS}} + \mathbf{b}_{out}

    * **GNN** (``modules/gnn_module.py`` ``GNN_node``, OGB's): ``gnn_layers`` x [conv, BatchNorm, ReLU
      (not after the last layer), dropout ``gnn_dropout``], no residual, the last layer's states; conv
      ``"gcn"`` is OGB's GCN (:class:`~graphattn.nn.OGBGCNConv`), ``"gin"`` OGB's GIN (MLP
      Linear-BN-ReLU-Linear of width :math:`2C`, learnable :math:`\epsilon`), both without edge features as
      on TU datasets; :math:`\mathbf{W}_{in}` is ``Linear(in_channels, channels)`` (``dataset/tud.py``).
    * **Transformer** (``modules/transformer_encoder.py``): ``Linear(channels, d_model)``, a learned
      ``<CLS>`` embedding :math:`\mathbf{c} \sim \mathcal N(0, 1)` appended to every graph's tokens, the input
      LayerNorm (``transformer_norm_input``), ``num_layers`` post-norm ``TransformerEncoderLayer`` (``heads``,
      ``dim_feedforward``, ReLU, ``dropout`` on the attention weights, feed-forward and residual branches; all
      layers start as copies of one, as in ``nn.TransformerEncoder``), a final LayerNorm; the ``<CLS>`` output
      feeds a linear classifier.

    GraphTrans pads each batch to its largest graph and masks the padding (``src_key_padding_mask``); here the
    attention runs on the engine over :meth:`~graphattn.AttentionGraph.full_per_graph` of the token sequence
    (``with_cls_tokens``): full attention within each graph and its ``<CLS>`` token, no padding, the same
    result; the last layer is computed for the ``<CLS>`` tokens only (the only outputs read). Also unlike the
    code: graphs are never cut to ``max_input_len`` = 1000 nodes (TU graphs have at most 620). Parameter count (GCN, 5
    layers, width 128, 37 inputs, 2 classes, 3 layers of 4 heads and feed-forward 256): 504,194, as the repository's
    model.

    Args:
        in_channels: node input width (one-hot labels); out_channels: classes (logits).
        channels: GNN width (``gnn_emb_dim``); gnn: ``"gcn"`` or ``"gin"`` (``gnn_type``); gnn_layers;
            gnn_dropout.
        d_model: transformer width; num_layers: transformer layers (``num_encoder_layers``); heads (``nhead``);
            dim_feedforward; dropout (``transformer_dropout``); norm_input: the input LayerNorm.

    Forward: as every ready-made model (:func:`~graphattn.models.model_inputs`), without edge features;
    returns ``[G, out_channels]`` logits. ``model(..., masks=provider)`` runs the transformer on the node tokens
    and with the head masks that the provider gives (``TokenMaskProvider``; GTSP, :mod:`graphattn.sparsify`,
    is one).
    """

    takes_masks = True

    def __init__(self, in_channels: int, out_channels: int, channels: int = 128, gnn: str = "gcn",
                 gnn_layers: int = 5, gnn_dropout: float = 0.1, d_model: int = 128, num_layers: int = 3,
                 heads: int = 4, dim_feedforward: int = 256, dropout: float = 0.1, norm_input: bool = True):
        if gnn not in GNNS:
            raise ValueError(f"gnn must be one of {', '.join(GNNS)}, got {gnn!r}")
        if gnn_layers < 2:
            raise ValueError(f"gnn_layers must be >= 2 (GraphTrans's GNN_node), got {gnn_layers}")
        super().__init__(channels, out_channels, num_layers=gnn_layers, local_conv=GNNS[gnn], num_virtual_nodes=0,
                         residual=False, dropout=gnn_dropout, block="ogb", node_encoder=in_channels,
                         edge_encoder=None)
        self.gnn2transformer = torch.nn.Linear(channels, d_model)
        self.norm_input = torch.nn.LayerNorm(d_model) if norm_input else None
        self.cls_embedding = torch.nn.Parameter(torch.randn(d_model))
        self.transformer = GraphTransformerEncoder(d_model, heads, dim_feedforward, dropout, num_layers)
        self.head = PredictionHead(d_model, out_channels, level="node")        # a Linear on the CLS outputs

    def gnn_nodes(self, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """The GNN's node states ``[N, channels]`` from the embedded inputs ``h``."""
        return super().body(h, edge_index, None, batch, num_graphs)

    def tokens(self, h: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor, Tensor]:
        """The transformer's input from the GNN's node states: ``with_cls_tokens`` of the projected states,
        through the input LayerNorm."""
        tokens, token_batch, cls_rows = with_cls_tokens(self.gnn2transformer(h), self.cls_embedding, batch,
                                                        num_graphs)
        return (tokens if self.norm_input is None else self.norm_input(tokens)), token_batch, cls_rows

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int, masks: Optional[TokenMaskProvider] = None) -> Tensor:
        """The ``<CLS>`` outputs ``[G, d_model]`` (one row per graph, which the per-row head classifies);
        ``edge_attr`` is always ``None`` (no edge encoder); ``masks``: see ``TokenMasks``."""
        h = self.gnn_nodes(h, edge_index, batch, num_graphs)
        selection = masks(h, batch, num_graphs) if masks is not None else TokenMasks()
        if selection.nodes is not None:
            h, batch = h.index_select(0, selection.nodes), batch.index_select(0, selection.nodes)
        if selection.scale is not None:
            h = h * selection.scale.unsqueeze(-1)
        tokens, token_batch, cls_rows = self.tokens(h, batch, num_graphs)
        to_cls = AttentionGraph.from_sorted_rows(token_batch, torch.arange(tokens.size(0), device=tokens.device),
                                                 tokens.size(0), num_graphs, validate=False)
        return self.transformer(tokens, AttentionGraph.full_per_graph(token_batch, num_graphs), (cls_rows, to_cls),
                                head_masks=selection.head_masks)
