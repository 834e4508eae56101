r"""LayerPruner: drop-path on the global-attention branch, then removal of the least important blocks."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["LayerPruner", "layers_to_keep"]


def layers_to_keep(num_layers: int, keep: float) -> int:
    r""":math:`\max(1, \operatorname{round}(\kappa L))` attention blocks."""
    return max(1, int(round(keep * num_layers)))


class LayerPruner:
    r"""Importance of the global-attention block of layer :math:`l`: the first-order (Taylor) score
    :math:`I_l = |\partial\mathcal L / \partial g_l|` of its gate :math:`g_l` (the output of the
    block is multiplied by :math:`g_l`), summed over the training steps up to ``prune_epoch``.
    During training the block is dropped per graph with probability ``drop_path``
    (stochastic depth, done by :class:`~graphattn.sparsify.SparseGPS`). After epoch ``prune_epoch``
    the :math:`L - \max(1, \operatorname{round}(\kappa L))` blocks with the lowest importance get
    gate 0; :meth:`GTSP.export` removes them.

    Args:
        keep: :math:`\kappa`; prune_epoch: see :class:`~graphattn.sparsify.GTSPConfig`.

    The ``[L]`` 0/1 gate is passed to :meth:`epoch_end` and ``prune``, which update it in place.
    """

    def __init__(self, keep: float, prune_epoch: int):
        self.keep, self.prune_epoch = keep, prune_epoch
        self.importance: Optional[Tensor] = None
        self.pruned = False

    def accumulate(self, grad: Optional[Tensor]) -> None:
        if grad is not None and not self.pruned:
            grad = grad.detach().abs()
            self.importance = grad if self.importance is None else self.importance + grad

    def epoch_end(self, epoch: int, gate: Tensor) -> bool:
        """Called after every epoch (1-based count of finished epochs); removes blocks once."""
        if self.pruned or epoch < self.prune_epoch:
            return False
        self.prune(gate)
        return True

    @torch.no_grad()
    def prune(self, gate: Tensor) -> None:
        importance = torch.zeros_like(gate) if self.importance is None else self.importance.to(gate)
        drop = importance.argsort()[: gate.numel() - layers_to_keep(gate.numel(), self.keep)]
        gate.index_fill_(0, drop, 0.0)
        self.pruned = True
