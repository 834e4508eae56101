r"""Pieces shared by the Triton kernels: normaliser math, tile gathers, the attention edge tile and its
score functions, the dropout hash, the split-K combine and the fixed-order row sum.

Every row-parallel kernel runs one program per *work item* of a
:class:`~sparse_kernels.triton.schedule.Plan` (a node and a contiguous range of its edges) and
per block of ``BLOCK_H`` heads. An item that covers its node's whole edge list writes the final
result; an item of a split node writes a partial result into slot ``slot`` of a scratch buffer,
and :func:`combine` merges the slots of each split node in a fixed order (no atomics, so the
result is bitwise reproducible).

Partial softmax states are merged as in flash-decoding:

.. math::
    M = \max_c m_c,\qquad L = \sum_c l_c e^{m_c - M},\qquad A = \sum_c a_c e^{m_c - M};

softplus (a softmax of :math:`\log\operatorname{softplus}`) the same way; sigmoid and plain sums add ``l``
and ``a``.

Per-edge inputs of the fused attention (bias, ``edge_k``, ``edge_v``) are in the user's edge order:
the edge at CSR position ``c`` reads them at its user id ``u = eid[c]`` (``u = c`` when the CSR
order is the user's, ``HAS_EID=False``), and so does its dropout decision, whose 64-bit counter is
``u * H + h`` (:func:`dropout_factor`, bit-identical to :mod:`sparse_kernels.dropout`).

The score function is the kernels' ``SCORE`` (a ``constexpr``, so each score compiles its own kernel and
the dot-product kernels are unchanged by the others; see :mod:`sparse_kernels.call` for the formulas).
"""
from __future__ import annotations

import os
import torch
import triton
import triton.language as tl
from torch import Tensor

from ..call import KernelCall
#: Normaliser codes passed as the kernels' ``NORM``; ``SUM`` is a plain per-node sum. The kernels
#: compare with the ``NORM_*`` twins (Triton reads globals only as ``constexpr``).
SOFTMAX, SIGMOID, SOFTPLUS, SUM = 0, 1, 2, 3
NORM_SOFTMAX, NORM_SIGMOID, NORM_SOFTPLUS, NORM_SUM = (tl.constexpr(c) for c in (SOFTMAX, SIGMOID, SOFTPLUS, SUM))
NORM_CODES = {"softmax": SOFTMAX, "sigmoid": SIGMOID, "softplus": SOFTPLUS}
#: Score function codes passed as the kernels' ``SCORE`` (``SCORE_*``: their ``constexpr`` twins).
DOT, GAT, GATV2 = 0, 1, 2
SCORE_DOT, SCORE_GAT, SCORE_GATV2 = (tl.constexpr(c) for c in (DOT, GAT, GATV2))
SCORE_CODES = {"dot": DOT, "gat": GAT, "gatv2": GATV2}

#: Input dtypes the kernels take; others (float64) fall back to the reference.
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """``True`` when Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def pow2(n: int) -> int:
    """The smallest power of two >= ``max(n, 1)``."""
    return triton.next_power_of_2(max(int(n), 1))


# --------------------------------------------------------------------------- normaliser math
@triton.jit
def sigmoid(s):
    return 1.0 / (1.0 + tl.exp(-s))


@triton.jit
def softplus(s):
    """:math:`\\log(1 + e^s) = \\max(s, 0) + \\log(1 + e^{-|s|})`, with a series for tiny terms."""
    x = tl.exp(-tl.abs(s))
    return tl.maximum(s, 0.0) + tl.where(x < 1e-4, x * (1.0 - 0.5 * x), tl.log(1.0 + x))


@triton.jit
def log_softplus(s):
    r""":math:`\log\operatorname{softplus}(s)` for every finite :math:`s` (``reference.log_softplus``): the series
    :math:`s + \log(1 - e^s/2 + e^{2s}/3)` below :math:`-15`, where softplus underflows."""
    e = tl.exp(tl.minimum(s, -15.0))
    return tl.where(s < -15.0, s + tl.log(1.0 + e * (e / 3.0 - 0.5)), tl.log(softplus(s)))


@triton.jit
def log_sigmoid(s):
    r""":math:`\log\sigma(s) = \min(s, 0) - \log(1 + e^{-|s|})`."""
    return tl.minimum(s, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(s)))


@triton.jit
def normaliser_scores(s, NORM: tl.constexpr):
    r"""The scores the running log-sum-exp of a row works on: ``s`` (softmax) or :math:`\log\operatorname{softplus}(s)`
    (softplus: a softmax of log softplus, exact for every finite score)."""
    if NORM == NORM_SOFTPLUS:
        s = log_softplus(s)
    return s


@triton.jit
def edge_weights(s, stat, NORM: tl.constexpr):
    """Attention weights from scores and the row statistic (``exp(s - lse)``, ``exp(log softplus(s) - log Z)``,
    ``sigmoid(s)``)."""
    if NORM == NORM_SOFTMAX:
        a = tl.exp(s - stat)
    elif NORM == NORM_SOFTPLUS:
        a = tl.exp(log_softplus(s) - stat)
    else:
        a = sigmoid(s)
    return a


@triton.jit
def score_grad(da, a, s, stat, delta, NORM: tl.constexpr):
    """:math:`\\partial s` from :math:`\\partial a` (see ``reference.edge_normalize_backward``)."""
    if NORM == NORM_SOFTMAX:
        ds = a * (da - delta)
    elif NORM == NORM_SOFTPLUS:
        ds = (da - delta) * tl.exp(log_sigmoid(s) - stat)
    else:
        ds = da * a * (1.0 - a)
    return ds


@triton.jit
def leaky_relu(x, slope):
    r""":math:`x` where :math:`x > 0`, :math:`\text{slope}\cdot x` elsewhere (the gat and gatv2 scores)."""
    return tl.where(x > 0, x, x * slope)


@triton.jit
def leaky_relu_grad(x, slope):
    """The derivative of :func:`leaky_relu` at ``x`` (``slope`` at 0, as the reference)."""
    return tl.where(x > 0, 1.0, slope)


@triton.jit
def online_update(m, l, s, NORM: tl.constexpr):
    r"""Folds a tile of scores ``s [BE, BH]`` into the running ``(m, l)``.

    Returns ``(m, l, p, alpha)``: the new state, the unnormalised weights ``p [BE, BH]`` and
    the factor ``alpha [BH]`` that rescales earlier accumulations (1 for sigmoid). Softplus runs
    the softmax update on :math:`\log\operatorname{softplus}(s)` (:func:`normaliser_scores`).
    Masked scores must be ``-inf``; a row whose scores are all ``-inf`` keeps ``m = -inf``, ``l = 0``.
    """
    if NORM == NORM_SOFTMAX or NORM == NORM_SOFTPLUS:
        s = normaliser_scores(s, NORM)
        m_new = tl.maximum(m, tl.max(s, 0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m - m_safe)
        p = tl.exp(s - m_safe[None, :])
        l = l * alpha + tl.sum(p, 0)
        m = m_new
    else:
        p = sigmoid(s)
        alpha = tl.full(l.shape, 1.0, tl.float32)
        l = l + tl.sum(p, 0)
    return m, l, p, alpha


@triton.jit
def finalize_stat(m, l, NORM: tl.constexpr):
    """The row statistic: lse (softmax), log Z (softplus), 0 (sigmoid), l (SUM); +inf for empty rows."""
    log_l = tl.log(tl.where(l > 0, l, 1.0))
    if NORM == NORM_SOFTMAX or NORM == NORM_SOFTPLUS:
        stat = tl.where(l > 0, tl.where(m == float("-inf"), 0.0, m) + log_l, float("inf"))
    elif NORM == NORM_SIGMOID:
        stat = tl.zeros(l.shape, tl.float32)
    else:
        stat = l
    return stat


@triton.jit
def finalize_acc(acc, l, NORM: tl.constexpr):
    """``acc / l`` for softmax and softplus (zero for empty rows), ``acc`` otherwise."""
    if NORM == NORM_SOFTMAX or NORM == NORM_SOFTPLUS:
        acc = acc / tl.where(l > 0, l, 1.0)[:, None]
    return acc


# --------------------------------------------------------------------------- tiles
@triton.jit
def load_item(items_ptr, item):
    """One work item of a schedule (:mod:`.schedule`): ``(node, start, end, slot)``, the node in int64. The
    edge positions stay int32 (int64 loop indices cost the fused forward 22 registers per thread, half its
    occupancy at D = 64): a tile of ``BLOCK_E`` edges from ``start`` stays below :math:`2^{31}` as a CSR
    holds at most :data:`~sparse_kernels.csr.MAX_EDGES` edges."""
    base = items_ptr + item.to(tl.int64) * 4
    return tl.load(base).to(tl.int64), tl.load(base + 1), tl.load(base + 2), tl.load(base + 3)


@triton.jit
def load_node(base, node, offs_h, offs_c, H, C):
    """Row ``node`` of a ``[N, H, C]`` tensor for the heads ``offs_h``: ``[BH, BC]`` in fp32."""
    mask = (offs_h < H)[:, None] & (offs_c < C)[None, :]
    return tl.load(base + node * (H * C) + offs_h[:, None] * C + offs_c[None, :], mask=mask,
                   other=0.0).to(tl.float32)


@triton.jit
def store_node(base, node, x, offs_h, offs_c, H, C):
    mask = (offs_h < H)[:, None] & (offs_c < C)[None, :]
    tl.store(base + node * (H * C) + offs_h[:, None] * C + offs_c[None, :],
             x.to(base.dtype.element_ty), mask=mask)


@triton.jit
def gather_nodes(base, idx, mask_e, offs_h, offs_c, H, C):
    """Rows ``idx [BE]`` (int64) of a ``[N, H, C]`` tensor: ``[BE, BH, BC]`` in fp32, zero where masked."""
    mask = mask_e[:, None, None] & (offs_h < H)[None, :, None] & (offs_c < C)[None, None, :]
    ptrs = base + idx[:, None, None] * (H * C) + offs_h[None, :, None] * C + offs_c[None, None, :]
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def edge_offsets(offs_e, offs_h, H):
    """Offsets of ``[E, H]`` per-edge values for edges ``offs_e`` and heads ``offs_h`` (int64)."""
    return offs_e.to(tl.int64)[:, None] * H + offs_h[None, :]


@triton.jit
def scatter_edges(base, idx, x, mask_e, offs_h, offs_c, H, C):
    """Stores ``x [BE, BH, BC]`` into rows ``idx [BE]`` (int64) of an ``[E, H, C]`` tensor (the inverse of
    :func:`gather_nodes`)."""
    mask = mask_e[:, None, None] & (offs_h < H)[None, :, None] & (offs_c < C)[None, None, :]
    ptrs = base + idx[:, None, None] * (H * C) + offs_h[None, :, None] * C + offs_c[None, None, :]
    tl.store(ptrs, x.to(base.dtype.element_ty), mask=mask)


@triton.jit
def attention_tile(q, att, offs_e, mask_e, offs_h, offs_d, offs_dv, col_ptr, eid_ptr, bias_ptr, ek_ptr, ev_ptr,
                   k_ptr, v_ptr, scale, slope, H, D, DV, SCORE: tl.constexpr, HAS_EID: tl.constexpr,
                   HAS_BIAS: tl.constexpr, HAS_EK: tl.constexpr, HAS_EV: tl.constexpr):
    r"""The CSR edges ``offs_e`` (``mask_e``) of a destination row whose query is ``q [BH, BD]``.

    Gathers the keys :math:`k_j + e^k_u` ``[BE, BH, BD]`` and values :math:`v_j + e^v_u` ``[BE, BH, BDV]``
    in fp32 (the edge vectors are added to the tiles, never stored), and scores them (``-inf`` where
    masked) with the score function ``SCORE``:

    * dot: :math:`s = \text{scale}\,\langle q_i, k_j + e^k_u\rangle + b_u`;
    * gat (``BD = 1``): :math:`s = \operatorname{LeakyReLU}(z)` with :math:`z = q_i + k_j + b_u`;
    * gatv2: :math:`s = \sum_d \text{att}_d \operatorname{LeakyReLU}(z)_d + b_u` with
      :math:`z = q_i + k_j + e^k_u` (``att [BH, BD]``, zero in padded lanes; the other scores ignore it).

    Returns ``(u, uh, k, v, s)``: the user ids ``u [BE]`` (int64) and the offsets ``u * H + h``
    ``[BE, BH]`` of the per-edge ``[E, H]`` values, which are also the dropout counters; for gat and
    gatv2 ``k`` holds the LeakyReLU input :math:`z` (what their gradients need) instead of the keys.
    """
    mask_eh = mask_e[:, None] & (offs_h < H)[None, :]
    j = tl.load(col_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
    if HAS_EID:
        u = tl.load(eid_ptr + offs_e, mask=mask_e, other=0).to(tl.int64)
    else:
        u = offs_e.to(tl.int64)
    k = gather_nodes(k_ptr, j, mask_e, offs_h, offs_d, H, D)
    v = gather_nodes(v_ptr, j, mask_e, offs_h, offs_dv, H, DV)  # all gathers in flight at once
    if HAS_EK:
        k += gather_nodes(ek_ptr, u, mask_e, offs_h, offs_d, H, D)
    if HAS_EV:
        v += gather_nodes(ev_ptr, u, mask_e, offs_h, offs_dv, H, DV)
    uh = edge_offsets(u, offs_h, H)
    if SCORE == SCORE_DOT:
        s = tl.sum(q[None, :, :] * k, 2) * scale
        if HAS_BIAS:
            s += tl.load(bias_ptr + uh, mask=mask_eh, other=0.0).to(tl.float32)
    else:
        k += q[None, :, :]
        if SCORE == SCORE_GAT:
            if HAS_BIAS:
                k += tl.load(bias_ptr + uh, mask=mask_eh, other=0.0).to(tl.float32)[:, :, None]
            s = leaky_relu(tl.sum(k, 2), slope)
        else:
            s = tl.sum(att[None, :, :] * leaky_relu(k, slope), 2)
            if HAS_BIAS:
                s += tl.load(bias_ptr + uh, mask=mask_eh, other=0.0).to(tl.float32)
    s = tl.where(mask_eh, s, float("-inf"))
    return u, uh, k, v, s


# --------------------------------------------------------------------------- dropout
@triton.jit
def mix32(x):
    """The "lowbias32" finaliser on ``uint32`` (shifts are logical, products wrap modulo :math:`2^{32}`)."""
    x ^= x >> 16
    x *= 0x7FEB352D
    x ^= x >> 15
    x *= 0x846CA68B
    x ^= x >> 16
    return x


@triton.jit
def dropout_keys(seed_ptr):
    r"""The hash keys ``(k0, k1)`` (``uint32``) of the one-element int64 seed tensor, read on the device:
    :math:`k_0 = \text{seed} \bmod 2^{32}`, :math:`k_1 = \operatorname{mix}(\lfloor \text{seed} / 2^{32}\rfloor
    \oplus \texttt{0x9E3779B9})`."""
    seed = tl.load(seed_ptr)
    return seed.to(tl.uint32), mix32((seed >> 32).to(tl.uint32) ^ 0x9E3779B9)


@triton.jit
def dropout_factor(counter, key0, key1, threshold, keep_scale):
    r"""``keep_scale`` where the counter-based mask keeps a weight, 0 where it drops it.

    ``counter`` are the int64 values ``c = u * H + h``; keep iff
    :math:`\lfloor \operatorname{mix}(\operatorname{mix}(c_{lo} + k_0) \oplus k_1 \oplus \operatorname{mix}(c_{hi}))
    / 2^8 \rfloor \ge` ``threshold``, with :math:`c_{lo}, c_{hi}` the low and high 32 bits of :math:`c`
    (:math:`\operatorname{mix}(0) = 0`: the high half changes nothing below :math:`2^{32}`).
    """
    high = mix32((counter >> 32).to(tl.uint32))
    x = mix32(mix32(counter.to(tl.uint32) + key0) ^ key1 ^ high)
    return tl.where((x >> 8) >= threshold, keep_scale, 0.0)


# --------------------------------------------------------------------------- attention inputs
def edge_inputs(call: KernelCall) -> tuple[tuple, dict]:
    """The optional inputs of the attention kernels: the tensors ``(eid, bias, edge_k, edge_v, seed, att)``
    (a placeholder for each absent one) and their flags ``HAS_EID``, ``HAS_BIAS``, ``HAS_EK``,
    ``HAS_EV``, ``DROPOUT`` (with ``shared_edge`` ``edge_k`` serves as ``edge_v``) and the score code
    ``SCORE``."""
    i, q, col, eid = call.inputs, call.inputs.q, call.graph.col, call.graph.eid
    edge_v = call.edge_v
    tensors = (col if eid is None else eid, q if i.bias is None else i.bias, q if i.edge_k is None else i.edge_k,
               q if edge_v is None else edge_v, i.seed.to(q.device, torch.int64) if call.dropout_active else col,
               q if i.att is None else i.att)
    flags = dict(HAS_EID=eid is not None, HAS_BIAS=i.bias is not None, HAS_EK=i.edge_k is not None,
                 HAS_EV=edge_v is not None, DROPOUT=call.dropout_active, SCORE=SCORE_CODES[call.options.score])
    return tensors, flags


# --------------------------------------------------------------------------- split-K combine
@triton.jit
def _combine_kernel(splits_ptr, pm_ptr, pl_ptr, pacc_ptr, stat_ptr, acc_ptr, H, F,
                    NORM: tl.constexpr, HAS_STAT: tl.constexpr, HAS_ACC: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_F: tl.constexpr):
    split = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_f = tl.arange(0, BLOCK_F)
    mask_h = offs_h < H
    node = tl.load(splits_ptr + split * 3).to(tl.int64)
    first = tl.load(splits_ptr + split * 3 + 1).to(tl.int64)
    count = tl.load(splits_ptr + split * 3 + 2)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_F], tl.float32)
    for c in range(0, count):
        slot = first + c
        alpha = tl.full([BLOCK_H], 1.0, tl.float32)
        beta = tl.full([BLOCK_H], 1.0, tl.float32)
        if HAS_STAT:
            pl = tl.load(pl_ptr + slot * H + offs_h, mask=mask_h, other=0.0)
            if NORM == NORM_SOFTMAX or NORM == NORM_SOFTPLUS:
                pm = tl.load(pm_ptr + slot * H + offs_h, mask=mask_h, other=float("-inf"))
                m_new = tl.maximum(m, pm)
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                alpha = tl.exp(m - m_safe)
                beta = tl.exp(pm - m_safe)
                m = m_new
            l = l * alpha + pl * beta
        if HAS_ACC:
            acc = acc * alpha[:, None] + beta[:, None] * load_node(pacc_ptr, slot, offs_h, offs_f, H, F)
    if HAS_STAT:
        tl.store(stat_ptr + node * H + offs_h, finalize_stat(m, l, NORM), mask=mask_h)
    if HAS_ACC:
        store_node(acc_ptr, node, finalize_acc(acc, l, NORM), offs_h, offs_f, H, F)


def combine(splits: Tensor, norm: int, heads: int, stat: Tensor | None = None,
            partial_m: Tensor | None = None, partial_l: Tensor | None = None,
            out: Tensor | None = None, partial_acc: Tensor | None = None) -> None:
    """Merges the partial results of split nodes into ``stat [N, H]`` and/or ``out [N, H, F]``.

    Args:
        splits: ``[R, 3]`` int32 ``(node, first slot, number of slots)``.
        norm: normaliser code; with ``stat`` the partial ``(m, l)`` ``[P, H]`` are merged.
        out, partial_acc: ``[N, H, F]`` and ``[P, H, F]`` accumulators (optional).
    """
    if splits.numel() == 0:
        return
    has_stat, has_acc = stat is not None, out is not None
    width = out.size(-1) if has_acc else 1
    block_f = pow2(width)
    block_h = min(pow2(heads), max(1, 4096 // block_f))
    dummy = splits
    grid = (splits.size(0), triton.cdiv(heads, block_h))
    _combine_kernel[grid](splits, partial_m if has_stat else dummy, partial_l if has_stat else dummy,
                          partial_acc if has_acc else dummy, stat if has_stat else dummy,
                          out if has_acc else dummy, heads, width, NORM=norm, HAS_STAT=has_stat,
                          HAS_ACC=has_acc, BLOCK_H=block_h, BLOCK_F=block_f,
                          num_warps=4 if block_h * block_f <= 1024 else 8)


def sum_rows(parts: Tensor, out: Tensor, group: int = 256) -> None:
    """``out [H, F] = sum_w parts[w]`` of ``parts [W, H, F]`` (fp32, ``W >= 1``) in a fixed order, without
    atomics: a tree of :func:`combine` calls, each summing consecutive groups of ``group`` rows in
    order (bitwise reproducible; ``ceil(log_group W)`` launches)."""
    heads, width = out.shape
    while True:
        n = parts.size(0)
        first = torch.arange(0, n, group, device=parts.device, dtype=torch.int32)
        splits = torch.stack([torch.arange(first.numel(), device=parts.device, dtype=torch.int32), first,
                              (n - first).clamp_max(group)], 1).contiguous()
        last = first.numel() == 1
        total = out.view(1, heads, width) if last else parts.new_empty(first.numel(), heads, width)
        combine(splits, SUM, heads, out=total, partial_acc=parts)
        if last:
            return
        parts = total
