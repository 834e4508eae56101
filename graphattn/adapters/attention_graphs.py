r"""The attention graph of a pretrained transformer layer.

A layer with queries :math:`q_i`, keys :math:`k_j` and an attention mask has, per head
:math:`h`, the probabilities

.. math::
    A^h_{ij} = \frac{\exp(\text{scale}\,\langle q^h_i, k^h_j\rangle)}
                    {\sum_{j' \text{ allowed}} \exp(\text{scale}\,\langle q^h_i, k^h_{j'}\rangle)}
    \qquad (j \text{ allowed for } i)

— a weighted graph over the tokens with edges :math:`j \to i` (key to query). This module
turns captured ``query``/``key``/mask tensors of a Hugging Face attention call into a sparse
:class:`~graphattn.graph.AttentionGraph` with ``edge_weight`` ``[E, H]``:

* only allowed pairs become edges: the model's mask (causal for decoders, padding keys
  excluded) and, in addition, padding *queries* are dropped (a token is padding when it may
  not attend to itself);
* optionally only the strongest edges are kept, per head: ``threshold`` (keep
  :math:`A^h_{ij} > \text{threshold}`) and/or ``top_k`` (the ``k`` largest per query); the
  graph holds the union over heads and a head's weight is 0 on edges that head did not keep;
* optionally the heads are reduced first (``reduce_heads="sum"`` or ``"mean"``) to a
  single-channel graph ``[E, 1]`` before the selection.

Route: the model keeps running its own fast attention (SDPA); the scores are recomputed
blockwise — a ``[b, H, q_block, L_k]`` block at a time, bounded by :data:`BLOCK_ELEMENTS` —
to get each row's normaliser and the selection, and only the kept entries leave the block.
Nothing of size :math:`B \cdot H \cdot L_q \cdot L_k` is held at once (outside autograd; when
``query``/``key`` require gradients, autograd keeps the blocks like eager attention would).

Nodes are numbered sequence-major: query ``i`` of sequence ``b`` is destination
``b * L_q + i`` and key ``j`` is source ``b * L_k + j``; edges come out already in CSR order.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


from ..graph import AttentionGraph

__all__ = ["attention_graph", "allowed_pairs", "BLOCK_ELEMENTS"]

#: Elements of one ``[b, H, q_block, L_k]`` score block.
BLOCK_ELEMENTS = 1 << 22

_REDUCTIONS = (None, "sum", "mean")


def allowed_pairs(mask: Optional[Tensor], batch: int, q_len: int, k_len: int, is_causal: bool,
                  device: torch.device) -> Tensor:
    r"""``[B, L_q, L_k]`` boolean: may query ``i`` attend to key ``j``, padding queries removed.

    Args:
        mask: the mask the model passed to its attention function: ``None``, boolean
            (``True`` = attend) or additive float (``-inf``/dtype-min = masked), of shape
            ``[B or 1, 1 or H, L_q, L_k]`` or ``[B, L_k]`` (a plain padding mask).
        is_causal: the model is causal and passed no mask (SDPA's ``is_causal`` route);
            queries are aligned to the last keys, as with a key/value cache.
    """
    if mask is None:
        allowed = torch.ones(1, q_len, k_len, dtype=torch.bool, device=device)
        if is_causal and q_len > 1:
            offset = k_len - q_len
            allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(offset).unsqueeze(0)
    else:
        if mask.dim() == 2:
            mask = mask[:, None, None, :]
        if mask.dim() != 4:
            raise ValueError(f"mask must have 2 or 4 dimensions, got shape {list(mask.shape)}")
        if mask.dtype == torch.bool:
            allowed = mask
        elif mask.dtype.is_floating_point:
            allowed = mask > torch.finfo(mask.dtype).min / 2
        else:
            allowed = mask != 0
        allowed = allowed.any(dim=1)          # a head-independent mask has dim 1 == 1
    allowed = allowed.expand(batch, q_len, k_len)
    if q_len == k_len:                        # a token that may not see itself is padding
        valid = allowed.diagonal(dim1=1, dim2=2)
        allowed = allowed & valid.unsqueeze(-1) & valid.unsqueeze(1)
    return allowed


def _validate(query: Tensor, key: Tensor, threshold: Optional[float], top_k: Optional[int],
              reduce_heads: Optional[str]) -> None:
    if not isinstance(query, Tensor) or query.dim() != 4:
        raise ValueError(f"query must be a tensor [B, H, L_q, D], got "
                         f"{list(query.shape) if isinstance(query, Tensor) else type(query).__name__}")
    if not isinstance(key, Tensor) or key.dim() != 4:
        raise ValueError("key must be a tensor [B, H_kv, L_k, D]")
    if key.size(0) != query.size(0) or key.size(-1) != query.size(-1):
        raise ValueError(f"query {list(query.shape)} and key {list(key.shape)} disagree in batch or channels")
    if query.size(1) % key.size(1) != 0:
        raise ValueError(f"query heads ({query.size(1)}) must be a multiple of key heads ({key.size(1)})")
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int, got {top_k}")
    if reduce_heads not in _REDUCTIONS:
        raise ValueError(f"reduce_heads must be one of {_REDUCTIONS}, got {reduce_heads!r}")


def _keep(probs: Tensor, allowed: Tensor, threshold: Optional[float], top_k: Optional[int]) -> Tensor:
    """Per-channel selection ``[b, C, q, L_k]`` within the allowed pairs."""
    keep = allowed.unsqueeze(1).expand_as(probs)
    if threshold is not None:
        keep = keep & (probs > threshold)
    if top_k is not None and top_k < probs.size(-1):
        kth = probs.masked_fill(~keep, -1.0).topk(top_k, dim=-1).values[..., -1:]
        keep = keep & (probs >= kth)
    return keep


def attention_graph(query: Tensor, key: Tensor, mask: Optional[Tensor] = None, *, is_causal: bool = False,
                    scaling: Optional[float] = None, threshold: Optional[float] = None,
                    top_k: Optional[int] = None, reduce_heads: Optional[str] = None) -> AttentionGraph:
    r"""The attention probabilities of one layer as a weighted :class:`AttentionGraph`.

    Args:
        query: ``[B, H, L_q, D]`` (after rotary embeddings where the model has them).
        key: ``[B, H_kv, L_k, D]``; grouped-query keys are shared by ``H / H_kv`` heads.
        mask: the model's attention mask (see :func:`allowed_pairs`).
        is_causal: causal attention without an explicit mask.
        scaling: score scale, default :math:`1/\sqrt{D}`.
        threshold: keep edges whose probability exceeds it (per head, or on the reduced
            heads).
        top_k: keep the ``top_k`` most probable keys of every query (per head / reduced).
        reduce_heads: ``"sum"`` or ``"mean"`` over heads before the selection (one channel).

    Returns:
        An :class:`AttentionGraph` with ``B * L_k`` sources, ``B * L_q`` destinations and
        ``edge_weight`` ``[E, C]`` (``C = H``, or 1 when reduced) in CSR order (identity
        ``perm``). Padding tokens have no edges.
    """
    _validate(query, key, threshold, top_k, reduce_heads)
    batch, heads, q_len, dim = query.shape
    k_len = key.size(2)
    scale = dim ** -0.5 if scaling is None else float(scaling)
    if key.size(1) != heads:
        key = key.repeat_interleave(heads // key.size(1), dim=1)
    allowed = allowed_pairs(mask, batch, q_len, k_len, is_causal, query.device)
    cdt = torch.float64 if query.dtype == torch.float64 else torch.float32
    q_block = max(1, min(q_len, BLOCK_ELEMENTS // max(1, heads * k_len)))
    b_block = max(1, BLOCK_ELEMENTS // max(1, heads * q_block * k_len)) if q_block == q_len else 1

    dst, src, weights = [], [], []
    for b0 in range(0, batch, b_block):
        b1 = min(batch, b0 + b_block)
        for i0 in range(0, q_len, q_block):
            i1 = min(q_len, i0 + q_block)
            ok = allowed[b0:b1, i0:i1]
            scores = torch.matmul(query[b0:b1, :, i0:i1], key[b0:b1].transpose(-1, -2)).to(cdt) * scale
            scores = scores.masked_fill(~ok.unsqueeze(1), float("-inf"))
            probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)   # rows without keys -> 0
            if reduce_heads == "sum":
                probs = probs.sum(1, keepdim=True)
            elif reduce_heads == "mean":
                probs = probs.mean(1, keepdim=True)
            keep = _keep(probs, ok, threshold, top_k)
            bb, ii, jj = keep.any(1).nonzero(as_tuple=True)
            weights.append((probs * keep)[bb, :, ii, jj])
            dst.append((bb + b0) * q_len + ii + i0)
            src.append((bb + b0) * k_len + jj)
    dst_t, src_t = torch.cat(dst), torch.cat(src)
    weight = torch.cat(weights).to(query.dtype)
    graph = AttentionGraph.from_sorted_rows(dst_t, src_t, batch * k_len, batch * q_len, validate=False)
    return graph.with_edge_weight(weight)
