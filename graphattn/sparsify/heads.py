r"""HeadPruner: gradient-importance head pruning with prune-and-regrow to a target density."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["HeadPruner", "heads_to_keep"]


def heads_to_keep(num_heads: int, density: float) -> int:
    r""":math:`\max(1, \operatorname{round}(\rho H))` heads per layer."""
    return max(1, int(round(density * num_heads)))


class HeadPruner:
    r"""Keeps :math:`k = \max(1, \operatorname{round}(\rho H))` heads in every layer.

    The importance of head :math:`h` of layer :math:`l` is
    :math:`I_{l,h} = \big|\sum \nabla_{\mathbf{o}_{l,h}} \mathcal L \odot \mathbf{o}_{l,h}\big|`
    (head output :math:`\mathbf{o}`), which is :math:`|\partial\mathcal L / \partial m_{l,h}|` for the
    head mask :math:`m`; it is summed over the steps between updates. Training starts from a
    random subset at density :math:`\rho`; every ``update_frequency`` steps (until ``stop_epoch``)
    the ``death_rate`` fraction of each layer's active heads with the lowest importance are
    pruned and as many inactive heads with the largest importance (gradient norm of their mask)
    are regrown, as in the GTSP code.

    Args:
        density, update_frequency, death_rate, stop_epoch: see :class:`~graphattn.sparsify.GTSPConfig`.

    The ``[L, H]`` 0/1 head mask is passed to :meth:`init_mask` and :meth:`step`, which update it in place.
    """

    def __init__(self, density: float, update_frequency: int, death_rate: float, stop_epoch: int):
        self.density, self.update_frequency = density, update_frequency
        self.death_rate, self.stop_epoch = death_rate, stop_epoch
        self.importance: Optional[Tensor] = None
        self.steps = 0
        self.updates = 0

    @torch.no_grad()
    def init_mask(self, mask: Tensor, generator: Optional[torch.Generator] = None) -> None:
        """A random subset of :math:`k` heads in every layer."""
        layers, heads = mask.shape
        order = torch.stack([torch.randperm(heads, generator=generator) for _ in range(layers)])
        mask.zero_().scatter_(1, order[:, :heads_to_keep(heads, self.density)].to(mask.device), 1.0)

    def accumulate(self, grad: Optional[Tensor]) -> None:
        r"""Adds one step's :math:`|\partial\mathcal L/\partial m|` (``None``: no gradient this step)."""
        if grad is not None:
            grad = grad.detach().abs()
            self.importance = grad if self.importance is None else self.importance + grad
            self.steps += 1

    def step(self, epoch: int, mask: Tensor) -> bool:
        """Called once per optimiser step; prunes and regrows when due. Returns whether it did."""
        if epoch >= self.stop_epoch or self.steps < self.update_frequency:
            return False
        self.update(mask)
        return True

    @torch.no_grad()
    def update(self, mask: Tensor) -> None:
        """One prune-and-regrow update of every layer of ``mask`` from the accumulated importance."""
        heads = mask.size(1)
        keep = heads_to_keep(heads, self.density)
        swap = min(int(math.floor(self.death_rate * keep)), heads - keep)
        if swap > 0 and self.importance is not None:
            score = self.importance.to(mask)
            active = mask > 0
            prune = score.masked_fill(~active, math.inf).topk(swap, dim=1, largest=False).indices
            grow = score.masked_fill(active, -math.inf).topk(swap, dim=1).indices
            mask.scatter_(1, prune, 0.0)
            mask.scatter_(1, grow, 1.0)
        self.importance = None
        self.steps = 0
        self.updates += 1
