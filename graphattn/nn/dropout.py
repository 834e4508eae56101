r"""Dropout with the engine's counter-based masks, a drop-in for :class:`torch.nn.Dropout`."""
from __future__ import annotations

import torch
from torch import Tensor

from ..functional import dropout

__all__ = ["Dropout"]


class Dropout(torch.nn.Dropout):
    r""":class:`torch.nn.Dropout` (same arguments, ``repr`` and distribution: in training each element is
    zeroed with probability :math:`p`, the others scaled by :math:`1 / (1 - p)`) drawing its mask with
    :func:`graphattn.functional.dropout`: a hash of the element index and a seed from PyTorch's generator,
    regenerated in the backward instead of stored.

    Args:
        p: probability of an element to be zeroed.
        inplace: write the result into the input.

    Shapes:
        input: any; output: the input's shape.
    """

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training, self.inplace)
