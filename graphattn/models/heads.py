r"""Prediction heads: graph-level (pooling) or node-level, one or several layers."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.resolver import activation_resolver

from ..nn._edge_ops import segment_sum
from ..nn.dropout import Dropout

__all__ = ["PredictionHead"]

POOLS = ("mean", "sum", "max")
HEAD_STYLES = ("mlp", "mlp_graph", "san_graph")


class PredictionHead(torch.nn.Module):
    r"""Readout + MLP head.

    Graph level: :math:`\mathbf{y}_g = \operatorname{MLP}(\operatorname{pool}_{i \in g}\mathbf{h}_i)`,
    pooling (``mean``/``sum``/``max``) over the real nodes only (a ``virtual_mask`` excludes the
    nodes added by :class:`~graphattn.data.virtual_node.AddVirtualNode`). Node level:
    :math:`\mathbf{y}_i = \operatorname{MLP}(\mathbf{h}_i)`. The MLP has ``num_layers`` linear
    layers, laid out by ``style`` (:math:`L` = ``num_layers``, :math:`C` = ``channels``):

    * ``"mlp"``: [Linear(:math:`C, C`)-:math:`\sigma`-Dropout] :math:`\times (L-1)`, Linear(:math:`C`, out);
    * ``"mlp_graph"``: GraphGPS's ``MLPGraphHead`` (Tönshoff et al. 2023): [Dropout-Linear(:math:`C, C`)-
      :math:`\sigma`] :math:`\times (L-1)`, Dropout, Linear(:math:`C`, out);
    * ``"san_graph"``: GraphGPS's ``SANGraphHead``: widths halve, Linear(:math:`C/2^l, C/2^{l+1}`)-:math:`\sigma`
      for :math:`l < L-1`, then Linear(:math:`C/2^{L-1}`, out); no dropout.

    Tönshoff et al. (2023) found a 3-layer head closes much of the gap between tuned MPNNs and graph
    transformers on LRGB.

    Args:
        channels: input width; out_channels: number of targets.
        num_layers: linear layers of the head (1: a linear head, after a dropout in ``"mlp_graph"``).
        level: ``"graph"`` or ``"node"``; pool: graph pooling.
        dropout: dropout of the head layers (not in ``"san_graph"``).
        act: activation :math:`\sigma` (a PyG activation resolver name).
        style: ``"mlp"``, ``"mlp_graph"`` or ``"san_graph"``.
    """

    def __init__(self, channels: int, out_channels: int, num_layers: int = 1, level: str = "graph",
                 pool: str = "mean", dropout: float = 0.0, act: str = "relu", style: str = "mlp"):
        super().__init__()
        if level not in ("graph", "node"):
            raise ValueError(f"level must be 'graph' or 'node', got {level!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if style not in HEAD_STYLES:
            raise ValueError(f"style must be one of {HEAD_STYLES}, got {style!r}")
        if style == "san_graph" and channels >> (num_layers - 1) < 1:
            raise ValueError(f"a 'san_graph' head of {num_layers} layers halves {channels} channels below 1")
        self.level, self.pool = level, pool
        layers = []
        width = channels
        for _ in range(num_layers - 1):
            if style == "mlp":
                layers += [torch.nn.Linear(width, width), activation_resolver(act), Dropout(dropout)]
            elif style == "mlp_graph":
                layers += [Dropout(dropout), torch.nn.Linear(width, width), activation_resolver(act)]
            else:
                layers += [torch.nn.Linear(width, width // 2), activation_resolver(act)]
                width //= 2
        if style == "mlp_graph":
            layers.append(Dropout(dropout))
        self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, out_channels))

    def reset_parameters(self) -> None:
        for layer in self.mlp:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def readout(self, h: Tensor, batch: Tensor, num_graphs: int, virtual_mask: Optional[Tensor] = None) -> Tensor:
        keep = None if virtual_mask is None else (~virtual_mask).to(h.dtype).unsqueeze(-1)
        if self.pool == "max":
            h = h if keep is None else h.masked_fill(keep == 0, float("-inf"))
            out = h.new_full((num_graphs, h.size(-1)), float("-inf"))
            out = out.scatter_reduce(0, batch.unsqueeze(-1).expand_as(h), h, "amax")
            return torch.where(torch.isinf(out), torch.zeros_like(out), out)
        total = segment_sum(h if keep is None else h * keep, batch, num_graphs)
        if self.pool == "sum":
            return total
        ones = torch.ones_like(h[:, :1]) if keep is None else keep
        return total / segment_sum(ones, batch, num_graphs).clamp(min=1)

    def forward(self, h: Tensor, batch: Optional[Tensor] = None, num_graphs: Optional[int] = None,
                virtual_mask: Optional[Tensor] = None) -> Tensor:
        if self.level == "graph":
            if batch is None:
                batch = torch.zeros(h.size(0), dtype=torch.long, device=h.device)
                num_graphs = 1
            elif num_graphs is None:
                num_graphs = int(batch.max()) + 1 if batch.numel() else 0
            h = self.readout(h, batch, num_graphs, virtual_mask)
        return self.mlp(h)
