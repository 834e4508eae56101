r"""SparseModel: what every GTSP-wrapped model shares (the model, its token scorer and head masks)."""
from __future__ import annotations

from typing import Any, List, Optional

import torch
from torch import Tensor

from ..nn.multihead_attention import MultiheadGraphAttention
from .config import GTSPConfig
from .token_mask import TokenMask

__all__ = ["SparseModel"]


class SparseModel(torch.nn.Module):
    r"""The shared part of :class:`~graphattn.sparsify.SparseGPS` and
    :class:`~graphattn.sparsify.SparseGraphTrans`: a model whose body takes a mask provider
    (``takes_masks``), run as ``model(..., masks=self.masks_for_batch)``.

    It holds the token scorer (:class:`~graphattn.sparsify.TokenMask`, when ``config`` prunes tokens), the
    ``[L, H]`` 0/1 head mask of the model's attention blocks (a buffer, updated by
    :class:`~graphattn.sparsify.HeadPruner`) and, during masked training, its live copy
    ``live_head_mask`` whose gradient is the heads' importance :math:`|\partial\mathcal L/\partial m|`.
    :meth:`make_structural` removes the pruned heads from the projections
    (:meth:`~graphattn.nn.MultiheadGraphAttention.prune_heads`).

    A subclass builds the model's attention blocks list (:meth:`attention_blocks`) and the masks of a batch
    (:meth:`masks_for_batch`).

    Args:
        model: the wrapped model (used in place); config: the GTSP configuration;
        channels: width of the states the token scorer reads; layers, heads: shape of the head mask.
    """

    def __init__(self, model: torch.nn.Module, config: GTSPConfig, channels: int, layers: int, heads: int):
        super().__init__()
        if not isinstance(config, GTSPConfig):
            raise TypeError(f"config must be a GTSPConfig, got {type(config).__name__}")
        self.model, self.config, self.structural = model, config, False
        self.token_mask = TokenMask(channels, config.token_ratio, config.tau) if config.prunes_tokens else None
        self.register_buffer("head_mask", torch.ones(layers, heads))
        self.live_head_mask: Optional[Tensor] = None

    def attention_blocks(self) -> List[Optional[MultiheadGraphAttention]]:
        """The attention block of every row of ``head_mask`` (``None``: removed)."""
        raise NotImplementedError

    def masks_for_batch(self, h: Tensor, batch: Tensor, num_graphs: int) -> Any:
        """The model's mask provider (called by its body with the node states of the batch)."""
        raise NotImplementedError

    def heads_for_batch(self) -> Tensor:
        """The ``[L, H]`` head mask of this batch: in masked training a fresh leaf copy of ``head_mask``
        (kept as ``live_head_mask``, whose gradient GTSP reads after the step), else the buffer."""
        if not self.structural and self.training:
            self.live_head_mask = self.head_mask.clone().requires_grad_(True)
            return self.live_head_mask
        self.live_head_mask = None
        return self.head_mask

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """The model's forward (arguments of :meth:`graphattn.models.GraphModel.forward`) with GTSP's masks."""
        return self.model(*args, masks=self.masks_for_batch, **kwargs)

    @torch.no_grad()
    def remove_pruned_heads(self) -> None:
        """Removes the heads with mask 0 from the projections of every attention block still there."""
        for i, attn in enumerate(self.attention_blocks()):
            if isinstance(attn, MultiheadGraphAttention) and bool((self.head_mask[i] == 0).any()):
                attn.prune_heads(self.head_mask[i].nonzero().view(-1))

    @torch.no_grad()
    def make_structural(self) -> None:
        """Removes what the masks prune, in place (here: the pruned heads; subclasses remove more)."""
        self.remove_pruned_heads()
        self.structural = True
        self.live_head_mask = None
