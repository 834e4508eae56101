r"""WeightPruner: global magnitude pruning on the cubic schedule, with optional regrowth."""
from __future__ import annotations

from typing import Dict, List

import torch

__all__ = ["WeightPruner", "cubic_sparsity", "prunable_weights"]


def cubic_sparsity(epoch: float, start: float, end: float, final_density: float, initial_density: float = 1.0) -> float:
    r"""The cubic schedule of Zhu & Gupta used by GTSP:
    :math:`s = (1 - d_0) + (d_0 - d_f)\,(1 - (1 - p)^3)`,
    :math:`p = \operatorname{clip}((t - t_0)/(t_1 - t_0), 0, 1)`."""
    progress = min(1.0, max(0.0, (epoch - start) / (end - start)))
    return (1 - initial_density) + (initial_density - final_density) * (1 - (1 - progress) ** 3)


def prunable_weights(module: torch.nn.Module) -> Dict[str, torch.nn.Parameter]:
    """The matrices (``dim == 2``) of ``module``'s parameters, by name: attention projections,
    MLPs and message-passing weights (embeddings and norms are not matrices of a linear map here)."""
    return {name: p for name, p in module.named_parameters() if p.dim() == 2 and p.requires_grad}


class WeightPruner:
    r"""Global magnitude pruning of ``weights`` (one threshold over all of them) to the sparsity of
    :func:`cubic_sparsity` at the end of every epoch; ``apply`` re-zeroes the pruned entries
    after every optimiser step. With ``regrow`` :math:`> 0`, each update also prunes that fraction
    of the kept weights (smallest magnitude) and regrows as many pruned ones with the largest
    gradient magnitude (from zero), as GTSP's optional regrowth.

    Args:
        weights: name -> parameter; final_density; start_epoch, end_epoch; regrow.
    """

    def __init__(self, weights: Dict[str, torch.nn.Parameter], final_density: float, start_epoch: int,
                 end_epoch: int, regrow: float = 0.0):
        if not weights:
            raise ValueError("weights must hold at least one parameter to prune")
        self.weights, self.final_density, self.regrow = weights, final_density, regrow
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in weights.items()}
        self.sparsity = 0.0

    @property
    def density(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total

    @torch.no_grad()
    def apply(self) -> None:
        for name, p in self.weights.items():
            if self.masks[name].device != p.device:                     # the model moved
                self.masks[name] = self.masks[name].to(p.device)
            p.mul_(self.masks[name])

    @torch.no_grad()
    def epoch_end(self, epoch: int) -> None:
        """Called after every epoch (1-based count of finished epochs): updates the masks
        within ``(start_epoch, end_epoch]``."""
        if not self.start_epoch < epoch <= self.end_epoch:
            return
        self.sparsity = cubic_sparsity(epoch, self.start_epoch, self.end_epoch, self.final_density)
        names: List[str] = list(self.weights)
        magnitude = torch.cat([self.weights[n].detach().abs().flatten() for n in names])
        total = magnitude.numel()
        keep = total - int(round(self.sparsity * total))
        flat = torch.zeros(total, dtype=torch.bool, device=magnitude.device)
        flat[magnitude.topk(keep).indices] = True
        grads = [self.weights[n].grad for n in names]
        if self.regrow > 0 and all(g is not None for g in grads):
            swap = int(self.regrow * keep)
            if 0 < swap <= total - keep:
                drop = magnitude.masked_fill(~flat, float("inf")).topk(swap, largest=False).indices
                grad = torch.cat([g.detach().abs().flatten() for g in grads]).masked_fill(flat, -1.0)
                grow = grad.topk(swap).indices
                flat[drop] = False
                flat[grow] = True
        offset = 0
        for name in names:
            n = self.weights[name].numel()
            self.masks[name] = flat[offset:offset + n].view_as(self.weights[name])
            offset += n
        self.apply()
