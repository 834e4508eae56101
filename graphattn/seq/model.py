r"""Sequence transformers whose attention runs on any attention pattern.

:class:`SeqGraphAttention` is multi-head self-attention over a sequence graph:

.. math::
    o_i = \sum_{j \in \mathcal N(i)} \operatorname{normalise}_j\!\big(
        \tfrac{1}{\sqrt D}\langle R_i q_i, R_j k_j\rangle + b_{ij}\big)\, v_j

with :math:`\mathcal N(i)` given by a static :class:`~graphattn.seq.patterns.Pattern` (cached
per batch shape) or a content-based pattern module built from :math:`q, k` per call
(:class:`~graphattn.seq.content.TopK`, :class:`~graphattn.seq.content.KMeansRouting`,
:class:`~graphattn.seq.content.RegionRouting`), :math:`R` the rotary embedding (optional),
:math:`b_{ij}` an optional ALiBi or learned relative bias (plus :math:`-\log n` for sigmoid
attention). For :class:`~graphattn.seq.patterns.Full` / :class:`~graphattn.seq.patterns.Causal`
on one sequence without edge bias it calls PyTorch's fused
:func:`~torch.nn.functional.scaled_dot_product_attention` (FlashAttention on a GPU); the graph
path gives the same result.

:class:`SeqGraphTransformer` stacks pre-LayerNorm blocks into an encoder (non-causal pattern)
or a causal decoder / language model (causal pattern). Inputs are packed: a batch of
sequences of different lengths is one ``[N]`` token vector plus ``seq_lengths`` (no padding).
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import NORMALIZERS, graph_attention
from .patterns import Causal, Full, Pattern, SeqGraph
from .positions import RelativePositionBias, RotaryEmbedding, alibi_bias, length_bias, sequence_positions

__all__ = ["SeqGraphAttention", "SeqGraphTransformer"]

PatternLike = Union[Pattern, nn.Module]


def _lengths(n: int, seq_lengths: Optional[Sequence[int]]) -> tuple[int, ...]:
    lengths = (n,) if seq_lengths is None else tuple(int(s) for s in seq_lengths)
    if sum(lengths) != n or any(s < 0 for s in lengths):
        raise ValueError(f"seq_lengths must be non-negative and sum to {n}, got {list(lengths)}")
    return lengths


class SeqGraphAttention(nn.Module):
    r"""Multi-head self-attention over a sequence attention graph.

    Args:
        dim: model width (``heads`` divides it).
        heads: number of heads.
        pattern: a static :class:`~graphattn.seq.patterns.Pattern` (e.g. ``Causal()``,
            ``SlidingWindow(256, causal=True) | GlobalTokens(4, causal=True)``) or a content
            pattern module called as ``pattern(q, k, seq_lengths) -> SeqGraph`` (copied, so
            every layer keeps its own state such as routing centroids).
        normalizer: ``"softmax"``, ``"sigmoid"`` (with the :math:`-\log n` bias) or ``"softplus"``.
        rotary: apply rotary position embeddings to :math:`q, k`.
        relative_bias: ``None``, ``"alibi"`` or ``"learned"`` (per head and clipped offset).
        max_distance: clipping of the learned relative bias.
        dropout: attention-weight dropout in training.
        use_sdpa: run full / causal patterns through fused SDPA (one call per sequence) when possible:
            softmax, no relative bias. Otherwise long full / causal patterns are refused above
            ``MAX_DENSE_EDGES`` edges instead of being materialised.

    Shapes: ``x`` ``[N, dim]`` (packed sequences) -> ``[N, dim]``.
    """

    def __init__(self, dim: int, heads: int, pattern: PatternLike, *, normalizer: str = "softmax",
                 rotary: bool = True, relative_bias: Optional[str] = None, max_distance: int = 128,
                 dropout: float = 0.0, use_sdpa: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        if normalizer not in NORMALIZERS:
            raise ValueError(f"normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
        if relative_bias not in (None, "alibi", "learned"):
            raise ValueError(f"relative_bias must be None, 'alibi' or 'learned', got {relative_bias!r}")
        if not isinstance(pattern, (Pattern, nn.Module)):
            raise TypeError(f"pattern must be a Pattern or a content-pattern module, got {type(pattern).__name__}")
        self.dim, self.heads, self.normalizer, self.dropout = dim, heads, normalizer, dropout
        self.pattern = copy.deepcopy(pattern) if isinstance(pattern, nn.Module) else pattern
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rotary = RotaryEmbedding(dim // heads) if rotary else None
        self.relative_bias = relative_bias
        self.rel = RelativePositionBias(heads, max_distance) if relative_bias == "learned" else None
        self.use_sdpa = use_sdpa

    def graph(self, q: Tensor, k: Tensor, seq_lengths: Sequence[int]) -> SeqGraph:
        """The attention graph of this call (cached for static patterns)."""
        if isinstance(self.pattern, Pattern):
            return self.pattern.batch(seq_lengths, q.device)
        return self.pattern(q, k, seq_lengths)

    def _edge_bias(self, graph: SeqGraph, seq_lengths: Sequence[int], dtype: torch.dtype) -> Optional[Tensor]:
        bias = None
        if self.relative_bias == "alibi":
            bias = alibi_bias(graph, self.heads, dtype)
        elif self.rel is not None:
            bias = self.rel(graph).to(dtype)
        if self.normalizer == "sigmoid":
            shift = length_bias(graph, seq_lengths, self.heads, dtype)
            bias = shift if bias is None else bias + shift
        return bias

    def _sdpa_applies(self, lengths: Sequence[int]) -> bool:
        return (self.use_sdpa and isinstance(self.pattern, (Full, Causal))
                and self.normalizer == "softmax" and self.relative_bias is None)

    def forward(self, x: Tensor, seq_lengths: Optional[Sequence[int]] = None) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.dim:
            raise ValueError(f"x must have shape [N, {self.dim}], got {list(x.shape)}")
        lengths = _lengths(x.size(0), seq_lengths)
        n, d = x.size(0), self.dim // self.heads
        q, k, v = self.qkv(x).view(n, 3, self.heads, d).unbind(1)
        if self.rotary is not None:
            pos = sequence_positions(lengths, x.device)
            q, k = self.rotary(q, pos), self.rotary(k, pos)
        drop = self.dropout if self.training else 0.0
        if self._sdpa_applies(lengths):        # one SDPA call per sequence: no O(n^2) edge list
            causal = isinstance(self.pattern, Causal)
            parts = [F.scaled_dot_product_attention(*(t.transpose(0, 1) for t in (qs, ks, vs)), dropout_p=drop,
                                                    is_causal=causal).transpose(0, 1)
                     for qs, ks, vs in zip(*(t.split(list(lengths)) for t in (q, k, v)))]
            out = parts[0] if len(parts) == 1 else torch.cat(parts)
        else:
            graph = self.graph(q, k, lengths)
            out = graph_attention(q, k, v, graph, bias=self._edge_bias(graph, lengths, q.dtype),
                                  normalizer=self.normalizer, dropout=drop)
        return self.proj(out.reshape(n, self.dim))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.heads}, pattern={self.pattern!r}, normalizer={self.normalizer}, "
                f"relative_bias={self.relative_bias}")


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, pattern: PatternLike, mlp_ratio: float, dropout: float, **attn):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SeqGraphAttention(dim, heads, pattern, dropout=dropout, **attn)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, seq_lengths: Sequence[int]) -> Tensor:
        x = x + self.attn(self.norm1(x), seq_lengths)
        return x + self.mlp(self.norm2(x))


class SeqGraphTransformer(nn.Module):
    r"""Transformer encoder / causal decoder over sequence attention graphs.

    Args:
        num_tokens: vocabulary size (token ids in, logits out); ``None`` for feature inputs
            ``[N, dim]`` and hidden states out.
        dim, depth, heads: width, number of blocks, heads.
        pattern: the attention pattern of every layer (see :class:`SeqGraphAttention`); a causal
            pattern makes a decoder (language model), any other an encoder.
        positions: ``"rope"`` (rotary in every layer), ``"learned"`` (absolute embeddings, needs
            ``max_len``) or ``"none"`` (e.g. with ``relative_bias``).
        max_len: longest sequence for learned positions.
        normalizer, relative_bias, max_distance, use_sdpa: see :class:`SeqGraphAttention`.
        mlp_ratio: hidden width of the feed-forward blocks over ``dim``.
        dropout: dropout on attention weights and feed-forward outputs.

    Shapes: ``tokens`` ``[N]`` packed with ``seq_lengths`` (default one sequence), or ``[B, L]``
    (``B`` sequences of length ``L``) -> logits ``[..., num_tokens]`` with the same leading shape.
    """

    def __init__(self, num_tokens: Optional[int], dim: int, depth: int, heads: int, pattern: PatternLike, *,
                 positions: str = "rope", max_len: Optional[int] = None, normalizer: str = "softmax",
                 relative_bias: Optional[str] = None, max_distance: int = 128, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, use_sdpa: bool = True):
        super().__init__()
        if positions not in ("rope", "learned", "none"):
            raise ValueError(f"positions must be 'rope', 'learned' or 'none', got {positions!r}")
        if positions == "learned" and not max_len:
            raise ValueError("positions='learned' needs max_len")
        self.num_tokens, self.dim, self.positions = num_tokens, dim, positions
        self.embed = nn.Embedding(num_tokens, dim) if num_tokens else None
        self.pos_embed = nn.Embedding(max_len, dim) if positions == "learned" else None
        self.blocks = nn.ModuleList(
            _Block(dim, heads, pattern, mlp_ratio, dropout, normalizer=normalizer, rotary=positions == "rope",
                   relative_bias=relative_bias, max_distance=max_distance, use_sdpa=use_sdpa)
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def forward(self, tokens: Tensor, seq_lengths: Optional[Sequence[int]] = None) -> Tensor:
        shape = None
        if self.embed is not None:
            if tokens.dtype.is_floating_point or tokens.dim() not in (1, 2):
                raise ValueError("tokens must be integer ids of shape [N] or [B, L]")
            if tokens.dim() == 2:
                if seq_lengths is not None:
                    raise ValueError("seq_lengths is only for packed [N] tokens")
                shape, seq_lengths = tokens.shape, [tokens.size(1)] * tokens.size(0)
                tokens = tokens.reshape(-1)
            x = self.embed(tokens)
        else:
            if tokens.dim() != 2 or tokens.size(1) != self.dim:
                raise ValueError(f"inputs must have shape [N, {self.dim}]")
            x = tokens
        lengths = _lengths(x.size(0), seq_lengths)
        if self.pos_embed is not None:
            if max(lengths, default=0) > self.pos_embed.num_embeddings:
                raise ValueError(f"a sequence is longer than max_len={self.pos_embed.num_embeddings}")
            x = x + self.pos_embed(sequence_positions(lengths, x.device))
        for block in self.blocks:
            x = block(x, lengths)
        x = self.norm(x)
        if self.embed is not None:
            x = x @ self.embed.weight.T           # tied output embedding
        return x if shape is None else x.reshape(*shape, -1)
