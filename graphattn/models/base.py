r"""The frame every ready-made model shares: embed the inputs, run a body, read out."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor

from .encoders import EdgeInputEncoder, InputEncoder
from .inputs import resolve_batch

__all__ = ["GraphModel"]


class GraphModel(torch.nn.Module):
    r"""Base of the ready-made models:

    .. math::
        \mathbf{h}^{(0)} = \operatorname{Enc}(\mathbf{x}, \text{PE}),\quad
        \mathbf{e} = \operatorname{EdgeEnc}(\mathbf{e}_{\text{attr}}),\quad
        \mathbf{h} = \operatorname{body}(\mathbf{h}^{(0)}, \mathcal{E}, \mathbf{e}),\quad
        \hat{\mathbf{y}} = \operatorname{head}(\mathbf{h})

    A subclass calls ``super().__init__`` (which builds ``encoder`` and, when ``edge_encoder``
    is not ``None``, ``edge_encoder``), then builds its layers and a
    :class:`~graphattn.models.PredictionHead` as ``self.head``, and implements :meth:`body`. A body
    that takes per-layer masks (``takes_masks = True``, e.g. :class:`~graphattn.models.GPS`) has a
    keyword argument ``masks``, the provider that :meth:`forward` passes on (how GTSP plugs in).

    Args:
        channels: hidden width.
        node_encoder: ``"ogb"`` (atom categories) or the float input width.
        edge_encoder: ``"ogb"``, a float input width, or ``None`` (the body takes no edge features).
        lap_pe_dim, rwse_dim: positional encodings added to the input (0: none).
        extra_categories: extra categories of the virtual-node transform.
        rwse_concat_dim: width of the RWSE concatenated to the node embedding (GraphGPS's
            ``Atom+RWSE``; 0: added), see :class:`~graphattn.models.InputEncoder`.
    """

    head: torch.nn.Module
    #: Whether :meth:`body` takes a per-layer mask provider (``masks``).
    takes_masks: bool = False

    def __init__(self, channels: int, node_encoder: Union[str, int] = "ogb",
                 edge_encoder: Union[str, int, None] = "ogb", lap_pe_dim: int = 0, rwse_dim: int = 0,
                 extra_categories: int = 0, rwse_concat_dim: int = 0):
        super().__init__()
        self.encoder = InputEncoder(channels, node_encoder, lap_pe_dim, rwse_dim, extra_categories, rwse_concat_dim)
        self.edge_encoder = (EdgeInputEncoder(channels, edge_encoder, extra_categories)
                             if edge_encoder is not None else None)

    def encode_edges(self, edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        """The edge features :meth:`body` receives: ``edge_encoder(edge_attr)`` ``[E, C]``, or ``None``
        without an edge encoder."""
        return self.edge_encoder(edge_attr) if self.edge_encoder is not None else None

    def body(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], batch: Tensor,
             num_graphs: int) -> Tensor:
        """Node states ``[N, C]`` -> node states ``[N, C]``; ``edge_attr`` is what :meth:`encode_edges`
        returns, ``batch`` ``[N]`` the graph of each node."""
        raise NotImplementedError

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None,
                batch: Optional[Tensor] = None, num_graphs: Optional[int] = None,
                lap_pe: Optional[Tensor] = None, rwse: Optional[Tensor] = None,
                virtual_mask: Optional[Tensor] = None, *, masks: Optional[Callable[..., Any]] = None) -> Tensor:
        """Arguments as given by :func:`graphattn.models.model_inputs`; returns ``[G, out]``
        (graph level) or ``[N, out]`` (node level). ``masks``: a per-layer mask provider for a body
        that takes one (``graphattn.models.gps.MaskProvider`` for GPS; ``None``: no masks)."""
        if masks is not None and not self.takes_masks:
            raise ValueError(f"masks: {type(self).__name__} takes no per-layer masks")
        h = self.encoder(x, lap_pe, rwse)
        batch, num_graphs = resolve_batch(batch, h.size(0), num_graphs, h.device)
        edge_attr = self.encode_edges(edge_attr)
        if masks is None:
            h = self.body(h, edge_index, edge_attr, batch, num_graphs)
        else:
            h = self.body(h, edge_index, edge_attr, batch, num_graphs, masks=masks)
        return self.head(h, batch, num_graphs, virtual_mask)
