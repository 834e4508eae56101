r"""Counter-based attention dropout: the mask is a hash of ``(seed, edge, head)``, never stored.

Every kernel (the plain-PyTorch reference here, the C kernels of :mod:`sparse_kernels.cpu`, the
Triton kernels and the dense-block path) computes the same keep decision for the same seed, so
the backward pass regenerates the mask instead of saving it, and all paths agree bit for bit.
With ``edge`` the user's edge id and ``H`` the number of heads, the counter of head ``h`` is the
64-bit :math:`c = \text{edge} \cdot H + h` (modulo :math:`2^{64}`), split into its halves
:math:`c_{lo} = c \bmod 2^{32}` and :math:`c_{hi} = \lfloor c / 2^{32} \rfloor`; all hash arithmetic is
modulo :math:`2^{32}`:

.. math::
    u = \operatorname{mix}(\operatorname{mix}(c_{lo} + k_0) \oplus k_1 \oplus \operatorname{mix}(c_{hi})),\qquad
    \text{keep} \iff \lfloor u / 2^8 \rfloor \ge t,

with :math:`k_0 = \text{seed} \bmod 2^{32}`,
:math:`k_1 = \operatorname{mix}(\lfloor \text{seed} / 2^{32} \rfloor \oplus \texttt{0x9E3779B9})`,
the threshold :math:`t = \operatorname{round}(p \cdot 2^{24})` and ``mix`` the 32-bit
"lowbias32" finaliser (``x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B;
x ^= x >> 16``). The high half is folded into the key :math:`k_1` so that the counter never wraps
(edge ids :math:`u` and :math:`u + 2^{32}/H` get independent masks); as :math:`\operatorname{mix}(0) = 0`,
every counter below :math:`2^{32}` keeps the mask of the earlier 32-bit counter bit for bit. Kept
weights are multiplied by :math:`1 / (1 - p)`, so the expectation of the output is unchanged; the
keep rate is :math:`1 - t / 2^{24}` (within :math:`3 \cdot 10^{-8}` of :math:`1 - p`).

The element-wise dropout of a dense tensor (:func:`elementwise_dropout`, the op
``sparse_kernels.elementwise_dropout``) uses the same hash with the element's row-major index as the
counter (``heads = 1``): :math:`\text{out} = x \cdot \text{keep} / (1 - p)`, and its backward is the same
call on the gradient with the same seed. On an ``[E, H]`` tensor the counter of element ``(e, h)`` is
:math:`e H + h`, the attention dropout's counter of edge ``e`` and head ``h``.

The seed is a one-element ``int64`` tensor on the inputs' device, drawn from PyTorch's
generator (:func:`new_seed`), so that dropout follows ``torch.manual_seed`` and reading it
never synchronises a GPU.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["threshold", "keep_scale", "new_seed", "keep_mask", "elementwise_keep", "elementwise_dropout", "MASK32"]

MASK32 = 0xFFFFFFFF
_MIX_A, _MIX_B, _GOLDEN = 0x7FEB352D, 0x846CA68B, 0x9E3779B9


def threshold(p: float) -> int:
    """The integer threshold :math:`t = \\operatorname{round}(p \\cdot 2^{24})` of dropout probability ``p``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return int(round(p * (1 << 24)))


def keep_scale(p: float) -> float:
    """The factor :math:`1 / (1 - p)` of kept weights."""
    return 1.0 / (1.0 - p)


def new_seed(device: torch.device | str, generator: Optional[torch.Generator] = None) -> Tensor:
    """A fresh 62-bit seed as a one-element int64 tensor on ``device`` (from PyTorch's generator)."""
    return torch.randint(0, 1 << 62, (1,), dtype=torch.long, device=device, generator=generator)


def _mix(x: Tensor) -> Tensor:
    """lowbias32 on int64 tensors holding values in ``[0, 2^32)`` (products wrap; the low 32 bits are exact)."""
    x = x ^ (x >> 16)
    x = (x * _MIX_A) & MASK32
    x = x ^ (x >> 15)
    x = (x * _MIX_B) & MASK32
    return x ^ (x >> 16)


def _mix_int(x: int) -> int:
    x ^= x >> 16
    x = (x * _MIX_A) & MASK32
    x ^= x >> 15
    x = (x * _MIX_B) & MASK32
    return x ^ (x >> 16)


def _keys(seed: Tensor) -> tuple[Tensor, Tensor]:
    s = seed.reshape(()).long()
    k0 = s & MASK32
    k1 = _mix(((s >> 32) & MASK32) ^ _GOLDEN)
    return k0, k1


def keep_mask(edge: Tensor, heads: int, seed: Tensor, p_threshold: int) -> Tensor:
    """``[*edge.shape, heads]`` boolean keep mask of the 64-bit counters ``edge * heads + h``.

    Args:
        edge: int64 user edge ids (any shape); negative ids (padding) give ``False``.
        heads: number of heads :math:`H`.
        seed: one-element int64 tensor (see :func:`new_seed`).
        p_threshold: :func:`threshold` of the dropout probability.
    """
    k0, k1 = _keys(seed.to(edge.device))
    h = torch.arange(heads, device=edge.device)
    counter = edge.long().unsqueeze(-1) * heads + h             # int64, wraps modulo 2^64
    low, high = counter & MASK32, (counter >> 32) & MASK32
    u = _mix(_mix((low + k0) & MASK32) ^ k1 ^ _mix(high))
    return ((u >> 8) >= p_threshold) & (edge.unsqueeze(-1) >= 0)


def elementwise_keep(shape: torch.Size | tuple[int, ...], seed: Tensor, p_threshold: int,
                     device: torch.device | str = "cpu") -> Tensor:
    """Boolean keep mask of ``shape`` whose element with row-major index ``t`` has the counter ``t``."""
    numel = 1
    for size in shape:
        numel *= size
    return keep_mask(torch.arange(numel, device=device), 1, seed, p_threshold).view(shape)


def elementwise_dropout(x: Tensor, seed: Tensor, p_threshold: int, keep_scale: float) -> Tensor:
    """The reference of the element-wise dropout: ``x * keep_scale`` where :func:`elementwise_keep` keeps,
    else 0 (a dropped ``inf`` or ``nan`` gives 0). The product is formed in ``x``'s dtype with ``keep_scale``
    rounded to it, in float32 for float16 / bfloat16 (rounded once to ``x``'s dtype), as the kernels do."""
    keep = elementwise_keep(x.shape, seed, p_threshold, x.device)
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    scaled = (x.to(compute) * keep_scale).to(x.dtype)
    return torch.where(keep, scaled, torch.zeros((), dtype=x.dtype, device=x.device))
