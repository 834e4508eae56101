r"""Element-wise counter-based dropout of a dense tensor: :math:`\text{out}_t = x_t / (1 - p)` where the
engine's hash keeps the counter :math:`t` (the row-major element index), else 0
(:func:`sparse_kernels.dropout.elementwise_dropout` is the reference).

One program per block of ``BLOCK`` elements; the counters are int64, so tensors of :math:`2^{32}` elements
and more hash their high halves as the reference does.
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from ._common import dropout_factor, dropout_keys

__all__ = ["elementwise_dropout"]

BLOCK = 1024


@triton.jit
def _dropout_kernel(x_ptr, seed_ptr, out_ptr, n, threshold, keep_scale, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    key0, key1 = dropout_keys(seed_ptr)
    factor = dropout_factor(offs, key0, key1, threshold, keep_scale)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    out = tl.where(factor > 0, x * factor, 0.0)          # a dropped inf or nan gives 0, as in the reference
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def elementwise_dropout(x: Tensor, seed: Tensor, p_threshold: int, keep_scale: float) -> Tensor:
    """Triton implementation of ``sparse_kernels::elementwise_dropout`` on contiguous ``x``: a new tensor of its
    shape and dtype."""
    out = x.new_empty(x.shape)
    n = x.numel()
    if n:
        _dropout_kernel[(triton.cdiv(n, BLOCK),)](x, seed, out, n, p_threshold, float(keep_scale), BLOCK=BLOCK,
                                                  num_warps=4)
    return out
