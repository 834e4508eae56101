r"""Plain-PyTorch graph attention: the CPU path and the test oracle of every kernel.

Notation (edges :math:`j \to i`, CSR by destination, see :mod:`sparse_kernels.csr`):

.. math::
    s_{ij} = \text{scale}\,\langle q_i, k_j \rangle + b_{ij}, \qquad
    a_{ij} = \operatorname{normalise}_{j \in \mathcal N(i)}(s_{ij}), \qquad
    o_i = \sum_{j \in \mathcal N(i)} a_{ij} v_j

with the normalisers

* ``"softmax"``: :math:`a_{ij} = e^{s_{ij} - \mathrm{lse}_i}`, :math:`\mathrm{lse}_i = \log\sum_j e^{s_{ij}}`;
* ``"sigmoid"``: :math:`a_{ij} = \sigma(s_{ij})` (put a shift such as :math:`-\log n` in the bias);
* ``"softplus"``: :math:`a_{ij} = \operatorname{softplus}(s_{ij}) / Z_i`,
  :math:`Z_i = \sum_j \operatorname{softplus}(s_{ij})`, computed in log space as a softmax of
  :math:`t_{ij} = \log \operatorname{softplus}(s_{ij})` (:func:`log_softplus`), so that it is exact for
  every finite score: where :math:`\operatorname{softplus}(s) \approx e^{s}` underflows (:math:`s < -88` in
  float32), the weights stay those of the limit (a single in-edge keeps weight 1).

Each normaliser keeps one statistic per (row, head), ``stat`` ``[N_dst, H]``: the
log-sum-exp for softmax, :math:`\log Z_i` for softplus, zero for sigmoid; the backward
pass recomputes :math:`a_{ij}` from the scores and ``stat``. Rows without edges (or whose
every score is ``-inf``) get ``stat = +inf``, zero output and zero gradient, never NaN.

Every function works on edges in CSR order and walks them in chunks, so the peak memory is
:math:`O(E \cdot H + N \cdot H \cdot D + C \cdot H \cdot D)` for a chunk of :math:`C` edges,
never :math:`O(E \cdot H \cdot D)`. Half-precision inputs are computed in float32 and the
outputs returned in the input dtype; float64 stays float64.

Index arguments follow one convention: an edge list is described by ``gather`` (the node
read for each edge) and ``segment`` (the node each edge is reduced into), both ``[E]``
int64. For the CSR ``gather = col`` and ``segment = row``; for its transpose
``gather = csc.row`` and ``segment = csc.col``.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from .call import SCORES
from .csr import offsets, to_csr_order, to_user_order
from .dropout import keep_mask

__all__ = [
    "NORMALIZERS",
    "sddmm",
    "spmm",
    "edge_normalize",
    "edge_normalize_backward",
    "attention_forward",
    "attention_backward",
    "dropout_multiplier",
    "log_softplus",
    "log_sigmoid",
    "leaky_relu",
]

NORMALIZERS = ("softmax", "sigmoid", "softplus")

#: Elements of one ``[C, H, D]`` chunk temporary (16M fp32 = 64 MB).
CHUNK_ELEMENTS = 1 << 24


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunks(num_edges: int, width: int):
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for start in range(0, num_edges, step):
        yield slice(start, min(start + step, num_edges))


#: Below this many ``E x H x D`` elements the gathers beat ``torch.sparse``'s per-head calls
#: (measured on one CPU thread: 45k elements 77 vs 125 us, 209k elements 250 vs 185 us).
SPARSE_MIN_ELEMENTS = 1 << 17


def _sparse_path(x: Tensor, ptr: Optional[Tensor], num_edges: int) -> bool:
    """Whether the CSR goes to ``torch.sparse`` (CPU, fp32/fp64, not tiny): MKL's sparse kernels
    then replace the gathers, with no ``[C, H, D]`` temporary at all."""
    return (ptr is not None and num_edges > 0 and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and num_edges * x.size(1) * x.size(2) >= SPARSE_MIN_ELEMENTS)


def _unique_pattern(ptr: Tensor, segment: Tensor, gather: Tensor, num_cols: int
                    ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """The pattern without repeated (segment, gather) pairs, as ``(ptr, gather, inverse)``;
    ``inverse`` maps every edge to its unique pair (``None`` when nothing repeats).
    ``torch.sparse.sampled_addmm`` rejects some patterns with repeated entries. Kept on ``ptr`` (one
    graph's offsets) with the ``gather`` tensor it was built for (a reference, not an address, so a freed
    tensor can never match) and both tensors' versions."""
    key = (_version(ptr), _version(gather))
    cached = getattr(ptr, "_graphattn_unique_pattern", None)
    if cached is None or cached[0] is not gather or cached[1] != key:
        pairs = segment * num_cols + gather
        unique, inverse = torch.unique(pairs, return_inverse=True)   # sorted: rows stay grouped
        if unique.numel() == pairs.numel():
            pattern = (ptr, gather, None)
        else:
            pattern = (offsets(unique // num_cols, ptr.numel() - 1), unique % num_cols, inverse)
        cached = (gather, key, pattern)
        ptr._graphattn_unique_pattern = cached
    return cached[2]


def _version(t: Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # inference tensors keep no version counter
        return 0


def _csr_matrix(ptr: Tensor, gather: Tensor, values: Tensor, num_cols: int) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(ptr, gather, values, (ptr.numel() - 1, num_cols))


def sddmm(a: Tensor, b: Tensor, segment: Tensor, gather: Tensor, ptr: Optional[Tensor] = None) -> Tensor:
    r"""Per-edge dot products :math:`s_e = \langle a_{\text{segment}(e)}, b_{\text{gather}(e)} \rangle`.

    Args:
        a: ``[N_a, H, D]``; b: ``[N_b, H, D]``; segment, gather: ``[E]``;
        ptr: optional ``[N_a + 1]`` offsets when ``segment`` is sorted (enables the sparse CPU path).

    Returns:
        ``[E, H]`` in the compute dtype (float32, or float64 for float64 inputs).
    """
    cdt = _compute_dtype(a.dtype)
    out = torch.empty(segment.numel(), a.size(1), dtype=cdt, device=a.device)
    if _sparse_path(a, ptr, segment.numel()):
        unique_ptr, unique_gather, inverse = _unique_pattern(ptr, segment, gather, b.size(0))
        pattern = _csr_matrix(unique_ptr, unique_gather, a.new_zeros(unique_gather.numel()), b.size(0))
        for h in range(a.size(1)):
            values = torch.sparse.sampled_addmm(pattern, a[:, h].contiguous(), b[:, h].t().contiguous(),
                                                beta=0.0).values()
            out[:, h] = values if inverse is None else values[inverse]
        return out
    for c in _chunks(segment.numel(), a.size(1) * a.size(2)):
        out[c] = (a.index_select(0, segment[c]).to(cdt) * b.index_select(0, gather[c]).to(cdt)).sum(-1)
    return out


def spmm(weight: Tensor, x: Tensor, segment: Tensor, gather: Tensor, num_out: int,
         ptr: Optional[Tensor] = None) -> Tensor:
    r"""Weighted aggregation :math:`o_n = \sum_{e:\,\text{segment}(e) = n} w_e\, x_{\text{gather}(e)}`.

    Args:
        weight: ``[E, H]``; x: ``[N_x, H, D]``; segment, gather: ``[E]``; num_out: rows of the output;
        ptr: optional ``[num_out + 1]`` offsets when ``segment`` is sorted (enables the sparse CPU path).

    Returns:
        ``[num_out, H, D]`` in the compute dtype.
    """
    cdt = _compute_dtype(x.dtype)
    if _sparse_path(x, ptr, segment.numel()):
        out = torch.empty(num_out, x.size(1), x.size(2), dtype=cdt, device=x.device)
        for h in range(x.size(1)):
            matrix = _csr_matrix(ptr, gather, weight[:, h].to(cdt).contiguous(), x.size(0))
            out[:, h] = matrix @ x[:, h].to(cdt)
        return out
    out = torch.zeros(num_out, x.size(1), x.size(2), dtype=cdt, device=x.device)
    for c in _chunks(segment.numel(), x.size(1) * x.size(2)):
        out.index_add_(0, segment[c], weight[c].to(cdt).unsqueeze(-1) * x.index_select(0, gather[c]).to(cdt))
    return out


def _segment_sum(values: Tensor, segment: Tensor, num_out: int) -> Tensor:
    out = values.new_zeros(num_out, values.size(1))
    return out.index_add_(0, segment, values)


def log_softplus(s: Tensor) -> Tensor:
    r""":math:`\log \operatorname{softplus}(s) = \log \log(1 + e^{s})` for every finite :math:`s`: below
    :math:`s = -15`, :math:`s + \log(1 - e^{s}/2 + e^{2s}/3)` (the series of :math:`\log(1 + e^{s})`, exact
    to :math:`e^{3s}`), where :math:`\operatorname{softplus}(s)` itself would underflow."""
    low = s < -15
    e = torch.exp(torch.where(low, s, torch.zeros_like(s)))
    return torch.where(low, s + torch.log1p(e * (e / 3 - 0.5)), torch.log(torch.nn.functional.softplus(s)))


def log_sigmoid(s: Tensor) -> Tensor:
    r""":math:`\log \sigma(s) = \min(s, 0) - \log(1 + e^{-|s|})`."""
    return torch.nn.functional.logsigmoid(s)


def edge_normalize(scores: Tensor, segment: Tensor, num_out: int, normalizer: str) -> tuple[Tensor, Tensor]:
    """Normalises ``scores`` ``[E, H]`` over each segment; returns ``(weights [E, H], stat [num_out, H])``."""
    cdt = _compute_dtype(scores.dtype)
    s = scores.to(cdt)
    if normalizer == "sigmoid":
        return torch.sigmoid(s), s.new_zeros(num_out, s.size(1))
    if normalizer not in ("softmax", "softplus"):
        raise ValueError(f"normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
    t = s if normalizer == "softmax" else log_softplus(s)          # softplus: a softmax of log softplus
    row_max = t.new_full((num_out, t.size(1)), float("-inf"))
    row_max = row_max.scatter_reduce(0, segment.unsqueeze(-1).expand_as(t), t, "amax", include_self=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    stat = row_max + torch.log(_segment_sum(torch.exp(t - row_max[segment]), segment, num_out))
    stat = torch.where(torch.isneginf(stat), torch.full_like(stat, float("inf")), stat)
    return _weights_from_stat(s, stat, segment, normalizer), stat


def _weights_from_stat(s: Tensor, stat: Tensor, segment: Tensor, normalizer: str) -> Tensor:
    if normalizer == "softmax":
        return torch.exp(s - stat[segment])
    if normalizer == "softplus":
        return torch.exp(log_softplus(s) - stat[segment])
    return torch.sigmoid(s)


def edge_normalize_backward(grad_weights: Tensor, weights: Tensor, scores: Tensor, stat: Tensor,
                            segment: Tensor, normalizer: str) -> Tensor:
    r"""Gradient of :func:`edge_normalize` w.r.t. the scores, ``[E, H]``.

    softmax: :math:`\partial s = a\,(\partial a - \delta_i)`, :math:`\delta_i = \sum_j a_{ij}\,\partial a_{ij}`;
    sigmoid: :math:`\partial s = \partial a\; a (1 - a)`;
    softplus: :math:`\partial s = (\partial a - \delta_i)\,\sigma(s) / Z_i`, with
    :math:`\sigma(s) / Z_i = e^{\log\sigma(s) - \log Z_i}` (no overflow where :math:`Z_i` underflows).
    """
    cdt = _compute_dtype(weights.dtype)
    da, a = grad_weights.to(cdt), weights.to(cdt)
    if normalizer == "sigmoid":
        return da * a * (1 - a)
    delta = _segment_sum(a * da, segment, stat.size(0))
    return _score_grad(da - delta[segment], a, scores.to(cdt), stat, segment, normalizer)


def _score_grad(centered: Tensor, a: Tensor, s: Tensor, stat: Tensor, segment: Tensor,
                normalizer: str) -> Tensor:
    if normalizer == "softmax":
        return a * centered
    return centered * torch.exp(log_sigmoid(s) - stat[segment])


def _gather(x: Tensor, index: Optional[Tensor], chunk: slice) -> Tensor:
    """Rows ``index[chunk]`` of ``x`` (rows ``chunk`` when ``index`` is ``None``)."""
    return x[chunk] if index is None else x.index_select(0, index[chunk])


def _edge_dot(a: Tensor, segment: Tensor, x: Tensor, eid: Optional[Tensor]) -> Tensor:
    r""":math:`\langle a_{\text{segment}(c)}, x_{\text{eid}(c)} \rangle` ``[E, H]`` for node vectors ``a``
    ``[N, H, D]`` and per-edge vectors ``x`` ``[E, H, D]``, in edge chunks."""
    cdt = _compute_dtype(a.dtype)
    out = torch.empty(segment.numel(), a.size(1), dtype=cdt, device=a.device)
    for c in _chunks(segment.numel(), a.size(1) * a.size(2)):
        out[c] = (a.index_select(0, segment[c]).to(cdt) * _gather(x, eid, c).to(cdt)).sum(-1)
    return out


def _edge_sum(weight: Tensor, x: Tensor, eid: Optional[Tensor], segment: Tensor, num_out: int) -> Tensor:
    r""":math:`o_n = \sum_{c:\,\text{segment}(c) = n} w_c\, x_{\text{eid}(c)}` ``[num_out, H, D]`` for per-edge
    vectors ``x`` ``[E, H, D]``, in edge chunks."""
    cdt = _compute_dtype(x.dtype)
    out = torch.zeros(num_out, x.size(1), x.size(2), dtype=cdt, device=x.device)
    for c in _chunks(segment.numel(), x.size(1) * x.size(2)):
        out.index_add_(0, segment[c], weight[c].to(cdt).unsqueeze(-1) * _gather(x, eid, c).to(cdt))
    return out


def _edge_outer(weight: Tensor, a: Tensor, segment: Tensor, eid: Optional[Tensor], like: Tensor) -> Tensor:
    r"""Per-edge vectors :math:`g_{\text{eid}(c)} = w_c\, a_{\text{segment}(c)}` ``[E, H, D]`` (in the order of
    ``eid``), in edge chunks; ``like`` gives the dtype."""
    out = torch.empty(segment.numel(), a.size(1), a.size(2), dtype=like.dtype, device=a.device)
    for c in _chunks(segment.numel(), a.size(1) * a.size(2)):
        values = (weight[c].unsqueeze(-1) * a.index_select(0, segment[c]).to(weight.dtype)).to(like.dtype)
        if eid is None:
            out[c] = values
        else:
            out.index_copy_(0, eid[c], values)
    return out


def dropout_multiplier(num_edges: int, heads: int, eid: Optional[Tensor], seed: Optional[Tensor],
                       p_threshold: int, keep_scale: float, dtype: torch.dtype,
                       device: torch.device) -> Optional[Tensor]:
    """``[E, H]`` factors :math:`\\text{keep}/(1-p)` in CSR order (``None`` without dropout); the mask
    of :mod:`sparse_kernels.dropout` on the user's edge ids ``eid`` (CSR positions when ``None``)."""
    if seed is None or p_threshold <= 0:
        return None
    edge = torch.arange(num_edges, device=device) if eid is None else eid
    return keep_mask(edge, heads, seed, p_threshold).to(dtype) * keep_scale


def leaky_relu(x: Tensor, negative_slope: float) -> Tensor:
    """:math:`\\max(x, 0) + \\text{slope} \\min(x, 0)` (the GAT scores' nonlinearity)."""
    return torch.where(x > 0, x, x * negative_slope)


def _leaky_grad(x: Tensor, negative_slope: float) -> Tensor:
    return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))


def _gatv2_pre(q: Tensor, k: Tensor, row: Tensor, col: Tensor, eid: Optional[Tensor], edge_k: Optional[Tensor],
               c: slice) -> Tensor:
    r""":math:`z_c = q_i + k_j (+ e^k_c)` ``[C, H, D]`` of the edges in chunk ``c`` (compute dtype)."""
    cdt = _compute_dtype(q.dtype)
    z = q.index_select(0, row[c]).to(cdt) + k.index_select(0, col[c]).to(cdt)
    return z if edge_k is None else z + _gather(edge_k, eid, c).to(cdt)


def _scores(q: Tensor, k: Tensor, row: Tensor, col: Tensor, bias: Optional[Tensor], scale: float,
            rowptr: Optional[Tensor], eid: Optional[Tensor], edge_k: Optional[Tensor], score: str = "dot",
            negative_slope: float = 0.2, att: Optional[Tensor] = None) -> Tensor:
    """Per-edge scores ``[E, H]`` in CSR order and the compute dtype (see :mod:`sparse_kernels.call`)."""
    cdt = _compute_dtype(q.dtype)
    if score == "dot":
        s = sddmm(q, k, row, col, rowptr)
        if edge_k is not None:
            s = s + _edge_dot(q, row, edge_k, eid)
        s = s * scale
    elif score == "gat":
        s = leaky_relu(q[:, :, 0].to(cdt).index_select(0, row) + k[:, :, 0].to(cdt).index_select(0, col)
                       + (0 if bias is None else to_csr_order(bias, eid).to(cdt)), negative_slope)
        return s
    elif score == "gatv2":
        s = torch.empty(row.numel(), q.size(1), dtype=cdt, device=q.device)
        for c in _chunks(row.numel(), q.size(1) * q.size(2)):
            s[c] = (leaky_relu(_gatv2_pre(q, k, row, col, eid, edge_k, c), negative_slope) * att.to(cdt)).sum(-1)
    else:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if bias is not None:
        s = s + to_csr_order(bias, eid).to(s.dtype)
    return s


def _score_input_grads(ds: Tensor, q: Tensor, k: Tensor, row: Tensor, col: Tensor, bias: Optional[Tensor],
                       eid: Optional[Tensor], edge_k: Optional[Tensor], negative_slope: float, att: Optional[Tensor],
                       score: str) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    r"""``(dq, dk, dbias, dedge_k, datt)`` of the gat/gatv2 scores from the score gradient ``ds`` ``[E, H]``
    (CSR order): with :math:`z` the LeakyReLU input, :math:`g = \partial s \cdot \text{LeakyReLU}'(z)` (gat)
    or :math:`g = \partial s\, \text{att} \odot \text{LeakyReLU}'(z)` (gatv2), :math:`\partial q_i = \sum_c g_c`,
    :math:`\partial k_j = \sum_c g_c`, :math:`\partial e^k_c = g_c`, :math:`\partial b_c` the bias' share and
    :math:`\partial \text{att} = \sum_c \partial s_c\, \text{LeakyReLU}(z_c)`."""
    cdt = ds.dtype
    if score == "gat":
        z = q[:, :, 0].to(cdt).index_select(0, row) + k[:, :, 0].to(cdt).index_select(0, col)
        if bias is not None:
            z = z + to_csr_order(bias, eid).to(cdt)
        g = ds * _leaky_grad(z, negative_slope)
        dq = _segment_sum(g, row, q.size(0)).unsqueeze(-1)
        dk = _segment_sum(g, col, k.size(0)).unsqueeze(-1)
        dbias = None if bias is None else to_user_order(g.to(bias.dtype), eid)
        return dq, dk, dbias, None, None
    dq = torch.zeros(q.shape, dtype=cdt, device=q.device)
    dk = torch.zeros(k.shape, dtype=cdt, device=q.device)
    dek = None if edge_k is None else torch.empty(edge_k.shape, dtype=cdt, device=q.device)
    datt = torch.zeros(att.shape, dtype=cdt, device=q.device)
    for c in _chunks(row.numel(), q.size(1) * q.size(2)):
        z = _gatv2_pre(q, k, row, col, eid, edge_k, c)
        datt += (ds[c].unsqueeze(-1) * leaky_relu(z, negative_slope)).sum(0)
        g = ds[c].unsqueeze(-1) * att.to(cdt) * _leaky_grad(z, negative_slope)
        dq.index_add_(0, row[c], g)
        dk.index_add_(0, col[c], g)
        if dek is not None:
            dek.index_copy_(0, torch.arange(c.start, c.stop, device=q.device) if eid is None else eid[c], g)
    dbias = None if bias is None else to_user_order(ds.to(bias.dtype), eid)
    return dq, dk, dbias, None if dek is None else dek.to(edge_k.dtype), datt.to(att.dtype)


def attention_forward(q: Tensor, k: Tensor, v: Tensor, row: Tensor, col: Tensor,
                      bias: Optional[Tensor], scale: float, normalizer: str,
                      rowptr: Optional[Tensor] = None, *, eid: Optional[Tensor] = None,
                      edge_k: Optional[Tensor] = None, edge_v: Optional[Tensor] = None,
                      seed: Optional[Tensor] = None, p_threshold: int = 0,
                      keep_scale: float = 1.0, score: str = "dot", negative_slope: float = 0.2,
                      att: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    r"""Fused-semantics attention on a CSR edge list:

    .. math::
        s_c = \text{scale}\,\langle q_i, k_j + e^k_c\rangle + b_c,\quad
        w_c = \operatorname{normalise}(s)_c \cdot \frac{\text{keep}_c}{1 - p},\quad
        o_i = \sum_{c \in \text{row } i} w_c\,(v_j + e^v_c).

    Args:
        q: ``[N_dst, H, D]``; k: ``[N_src, H, D]``; v: ``[N_src, H, Dv]``;
        row, col: ``[E]`` destination / source of each edge in CSR order;
        bias: ``[E, H]``, edge_k: ``[E, H, D]``, edge_v: ``[E, H, Dv]`` per-edge inputs, each read at
            row ``eid[c]`` for CSR position ``c`` (in CSR order when ``eid`` is ``None``);
        rowptr: optional ``[N_dst + 1]`` CSR offsets (enables the sparse CPU path);
        seed, p_threshold, keep_scale: counter-based dropout (:mod:`sparse_kernels.dropout`) on the
            edge ids ``eid`` (``seed=None``: none);
        score, negative_slope, att: the score function (``"dot"`` as above, ``"gat"``, ``"gatv2"``; see
            :mod:`sparse_kernels.call`), its LeakyReLU slope and GATv2's ``att`` ``[H, D]``.

    Returns:
        ``out`` ``[N_dst, H, Dv]`` in ``q``'s dtype and ``stat`` ``[N_dst, H]`` in the compute dtype.
    """
    s = _scores(q, k, row, col, bias, scale, rowptr, eid, edge_k, score, negative_slope, att)
    a, stat = edge_normalize(s, row, q.size(0), normalizer)
    mult = dropout_multiplier(row.numel(), q.size(1), eid, seed, p_threshold, keep_scale, a.dtype, a.device)
    w = a if mult is None else a * mult
    out = spmm(w, v, row, col, q.size(0), rowptr)
    if edge_v is not None:
        out = out + _edge_sum(w, edge_v, eid, row, q.size(0))
    return out.to(q.dtype), stat


def attention_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, stat: Tensor,
                       row: Tensor, col: Tensor, bias: Optional[Tensor], scale: float,
                       normalizer: str, rowptr: Optional[Tensor] = None,
                       transpose: Optional[tuple[Tensor, Tensor, Tensor]] = None, *,
                       eid: Optional[Tensor] = None, edge_k: Optional[Tensor] = None,
                       edge_v: Optional[Tensor] = None, seed: Optional[Tensor] = None,
                       p_threshold: int = 0, keep_scale: float = 1.0, score: str = "dot",
                       negative_slope: float = 0.2, att: Optional[Tensor] = None,
                       ) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor],
                                  Optional[Tensor]]:
    r"""Gradients of :func:`attention_forward`, recomputing :math:`a_{ij}` from ``stat`` and the dropout
    mask from the seed.

    With :math:`\partial a_c = m_c \langle \partial o_i, v_j + e^v_c\rangle` (:math:`m_c` the dropout factor),
    the score gradient :math:`\partial s_c` follows :func:`edge_normalize_backward` (for softmax and
    softplus :math:`\delta_i = \langle \partial o_i, o_i \rangle`), and with :math:`w_c = m_c a_c`

    .. math::
        \partial q_i = \text{scale} \sum_c \partial s_c (k_j + e^k_c),\quad
        \partial k_j = \text{scale} \sum_c \partial s_c\, q_i,\quad
        \partial v_j = \sum_c w_c\, \partial o_i,\quad
        \partial e^k_c = \text{scale}\, \partial s_c\, q_i,\quad
        \partial e^v_c = w_c\, \partial o_i,\quad \partial b_c = \partial s_c.

    ``rowptr`` and ``transpose = (colptr, csc_row, csc_perm)`` (see :class:`~sparse_kernels.csr.CSC`)
    enable the sparse CPU path. The gat and gatv2 scores take their gradients from :math:`\partial s`
    through :func:`_score_input_grads`. Returns ``(dq, dk, dv, dbias, dedge_k, dedge_v, datt)`` in the inputs'
    dtypes and orders (``None`` for absent inputs).
    """
    cdt = _compute_dtype(q.dtype)
    s = _scores(q, k, row, col, bias, scale, rowptr, eid, edge_k, score, negative_slope, att)
    a = _weights_from_stat(s, stat.to(cdt), row, normalizer)
    mult = dropout_multiplier(row.numel(), q.size(1), eid, seed, p_threshold, keep_scale, cdt, a.device)
    da = sddmm(grad_out, v, row, col, rowptr)
    if edge_v is not None:
        da = da + _edge_dot(grad_out, row, edge_v, eid)
    w = a
    if mult is not None:
        da, w = da * mult, a * mult
    if normalizer == "sigmoid":
        ds = da * a * (1 - a)
    else:
        delta = (grad_out.to(cdt) * out.to(cdt)).sum(-1)
        ds = _score_grad(da - delta[row], a, s, stat.to(cdt), row, normalizer)
    if transpose is not None:   # source-major pass over the transpose
        colptr, csc_row, csc_perm = transpose
        csc_col = col[csc_perm]
        dv = spmm(w[csc_perm], grad_out, csc_col, csc_row, v.size(0), colptr)
    else:
        dv = spmm(w, grad_out, col, row, v.size(0))
    dedge_v = None if edge_v is None else _edge_outer(w, grad_out, row, eid, edge_v)
    if score != "dot":
        dq, dk, dbias, dedge_k, datt = _score_input_grads(ds, q, k, row, col, bias, eid, edge_k, negative_slope,
                                                          att, score)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbias, dedge_k, dedge_v, datt
    dq = spmm(ds, k, row, col, q.size(0), rowptr)
    if edge_k is not None:
        dq = dq + _edge_sum(ds, edge_k, eid, row, q.size(0))
    dq = dq * scale
    if transpose is not None:
        dk = spmm(ds[csc_perm], q, csc_col, csc_row, k.size(0), colptr) * scale
    else:
        dk = spmm(ds, q, col, row, k.size(0)) * scale
    dbias = None if bias is None else to_user_order(ds.to(bias.dtype), eid)
    dedge_k = None if edge_k is None else _edge_outer(ds * scale, q, row, eid, edge_k)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dbias, dedge_k, dedge_v, None
