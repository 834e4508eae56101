r"""Per-graph Gumbel-softmax top-k with a straight-through estimator (the shared piece of the
token and edge masks)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import softmax as segment_softmax

__all__ = ["group_topk", "group_topk_mask"]


def _descending_bits(scores: Tensor) -> Tensor:
    """An int64 in ``[0, 2^32)`` per score (as float32) that sorts ascending when the scores sort
    descending: one sort of ``group * 2^32 + key`` orders by group, then by score."""
    bits = scores.float().view(torch.int32).long() & 0xFFFFFFFF
    ascending = torch.where(bits >= 1 << 31, 0xFFFFFFFF - bits, bits + (1 << 31))
    return 0xFFFFFFFF - ascending


def group_topk(scores: Tensor, group: Tensor, num_groups: int, ratio: float,
               valid: Optional[Tensor] = None) -> Tensor:
    r"""The boolean mask of the :math:`k_g = \lceil r\, n_g\rceil` highest ``scores`` of every
    group :math:`g` (``n_g``: the valid items of the group; a non-empty group keeps at least one).

    Args:
        scores: ``[M]``; group: ``[M]`` group id of every item (any order); num_groups: ``G``.
        ratio: keep ratio :math:`r \in (0, 1]`; valid: ``[M]`` bool, the candidates (default: all).

    Returns:
        ``[M]`` bool. Scores are ranked in float32; ties break by position. No padding: each
        group ranks only its own items (one sort of ``M`` keys).
    """
    if scores.dim() != 1 or group.shape != scores.shape:
        raise ValueError(f"scores and group must be 1-D of the same length, got {list(scores.shape)} "
                         f"and {list(group.shape)}")
    if valid is None:
        valid = torch.ones_like(group, dtype=torch.bool)
    group = group.long()
    sizes = torch.zeros(num_groups, dtype=torch.long, device=group.device).index_add_(0, group, valid.long())
    k = torch.where(sizes > 0, torch.clamp(torch.ceil(sizes.double() * ratio - 1e-9).long(), min=1), sizes)
    key = torch.where(valid, scores.detach(), torch.full_like(scores, -math.inf))
    order = torch.sort(group * (1 << 32) + _descending_bits(key), stable=True).indices   # group, then score
    counts = torch.zeros(num_groups, dtype=torch.long, device=group.device).index_add_(0, group, torch.ones_like(group))
    starts = counts.cumsum(0) - counts                                   # first position of each group
    rank = torch.arange(order.numel(), device=group.device) - starts[group[order]]
    keep = torch.zeros_like(valid)
    keep[order] = rank < k[group[order]]
    return keep & valid


def group_topk_mask(scores: Tensor, group: Tensor, num_groups: int, ratio: float, tau: float = 1.0,
                    valid: Optional[Tensor] = None, training: bool = True) -> Tensor:
    r"""Straight-through Gumbel-softmax top-k mask per group:

    .. math::
        \tilde s = (s + \epsilon) / \tau,\ \epsilon \sim \operatorname{Gumbel}(0, 1)\ \text{(training only)},\qquad
        y^{soft} = k_g \operatorname{softmax}_{g}(\tilde s),\qquad
        y = y^{hard} - \operatorname{sg}(y^{soft}) + y^{soft}

    with :math:`y^{hard}` the top-:math:`k_g` indicator of :math:`\tilde s` in every group
    (:func:`group_topk`). The forward value is exactly 0/1; the gradient reaches every score of
    the group through the softmax. In evaluation there is no noise, so the mask is deterministic.

    Returns:
        ``[M]`` float mask (dtype of ``scores``), 0 outside ``valid``.
    """
    if training:
        uniform = torch.rand_like(scores).clamp_(1e-10, 1 - 1e-10)
        scores = scores - torch.log(-torch.log(uniform))
    scores = scores / tau
    hard = group_topk(scores, group, num_groups, ratio, valid).to(scores.dtype)
    if valid is not None:
        scores = scores.masked_fill(~valid, -math.inf)
    soft = segment_softmax(scores, group.long(), num_nodes=num_groups)
    soft = torch.nan_to_num(soft, nan=0.0)
    k = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add_(0, group.long(), hard)
    soft = soft * k[group.long()]
    return hard - soft.detach() + soft
