"""Counter-based attention dropout: one mask per (seed, edge, head), the same on every path.

The masks of the plain-PyTorch hash (:mod:`sparse_kernels.dropout`), the compiled CPU kernels and the
dense-block path agree bit for bit; the keep rate is 1 - p; the expectation of the output is the
output without dropout; the mask follows ``torch.manual_seed`` and is regenerated in the backward. The
counter ``edge * H + h`` is 64 bits wide: counters below 2^32 keep the masks of the former 32-bit
counter, and edges ``u`` and ``u + 2^32 / H`` get independent masks."""
import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
import triton
import triton.language as tl

import graphattn as ga
import sparse_kernels as sk
from sparse_kernels import dense_blocks, dropout as drop
from sparse_kernels.triton._common import dropout_factor, dropout_keys, interpreting
from helpers import random_graph

DT = torch.float64
needs_cpu_kernels = pytest.mark.skipif(not sk.cpu.available(), reason="compiled CPU kernels unavailable")
needs_interpreter = pytest.mark.skipif(not interpreting(), reason="CPU tests of the kernels need TRITON_INTERPRET=1")
M32 = 0xFFFFFFFF


def _graph(num_nodes=9, num_edges=40, seed=0):
    """``(edge_index, engine CSR)`` of a random graph with self-loops."""
    ei = random_graph(num_nodes, num_nodes, num_edges, self_loops=True, seed=seed)
    return ei, sk.build_csr(ei, num_nodes, num_nodes)


def test_hash_is_the_documented_lowbias32():
    """Scalar re-derivation of the spec for a few counters (independent of the tensor code)."""
    def mix(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    seed, heads, p = (7 << 32) + 123, 3, 0.4
    k0, k1 = seed & 0xFFFFFFFF, mix((seed >> 32) ^ 0x9E3779B9)
    edges = torch.tensor([0, 1, 5, 1000, 2 ** 31 + 3])
    mask = drop.keep_mask(edges, heads, torch.tensor([seed]), drop.threshold(p))
    for row, e in enumerate(edges.tolist()):
        for h in range(heads):
            u = mix(mix(((e * heads + h) + k0) & 0xFFFFFFFF) ^ k1)
            assert bool(mask[row, h]) == ((u >> 8) >= round(p * 2 ** 24))


@needs_cpu_kernels
def test_cpu_kernel_masks_equal_the_reference_hash():
    edges = torch.cat([torch.arange(-2, 50_000), torch.randint(0, 2 ** 40, (1000,))])
    seed = torch.tensor([123456789012345])
    for p in (0.1, 0.5, 0.9):
        want = drop.keep_mask(edges, 4, seed, drop.threshold(p))
        got = sk.cpu.dropout_keep(edges, 4, int(seed), drop.threshold(p))
        assert torch.equal(got, want)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_over_a_million_edges(p):
    mask = drop.keep_mask(torch.arange(1 << 20), 1, torch.tensor([99]), drop.threshold(p))
    assert abs(mask.double().mean().item() - (1 - p)) < 0.01 * (1 - p)


def test_masks_differ_across_seeds_and_heads():
    edges = torch.arange(4096)
    a = drop.keep_mask(edges, 2, torch.tensor([1]), drop.threshold(0.5))
    b = drop.keep_mask(edges, 2, torch.tensor([2]), drop.threshold(0.5))
    agree = (a == b).double().mean().item()
    assert 0.45 < agree < 0.55                          # independent masks agree half the time
    assert 0.45 < (a[:, 0] == a[:, 1]).double().mean().item() < 0.55


@pytest.mark.parametrize("kernels", ["cpu", "reference"])
def test_expectation_is_the_output_without_dropout(kernels):
    ei, csr = _graph()
    q, k, v = (torch.randn(9, 2, 4, dtype=DT) for _ in range(3))
    if kernels == "cpu" and not sk.cpu.available():
        pytest.skip("compiled CPU kernels unavailable")
    override = (sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS) if kernels == "reference"
                else contextlib.nullcontext())
    with override:
        exact = ga.graph_attention(q, k, v, ei)
        samples = torch.stack([sk.attention(q, k, v, csr, dropout=0.3, seed=torch.tensor([s]))
                               for s in range(4000)])
    mean, spread = samples.mean(0), samples.std(0) / 4000 ** 0.5
    assert ((mean - exact).abs() <= 5 * spread + 1e-12).all()


@needs_cpu_kernels
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_cpu_kernels_and_reference_drop_the_same_weights(normalizer):
    ei, csr = _graph(num_nodes=12, num_edges=70)
    tensors = [torch.randn(12, 3, 4, dtype=DT, requires_grad=True) for _ in range(3)]
    edge_v = torch.randn(ei.size(1), 3, 4, dtype=DT, requires_grad=True)
    seed, grad = torch.tensor([77]), torch.randn(12, 3, 4, dtype=DT)
    results = []
    for override in (False, True):
        ctx = (sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS) if override
               else contextlib.nullcontext())
        with ctx:
            out = sk.attention(*tensors, csr, edge_v=edge_v, normalizer=normalizer, dropout=0.5, seed=seed)
            results.append((out, torch.autograd.grad(out, tensors + [edge_v], grad)))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_dropout_follows_manual_seed_and_zero_rows_stay_zero():
    ei, csr = _graph()
    q, k, v = (torch.randn(9, 2, 4) for _ in range(3))
    torch.manual_seed(5)
    a = ga.graph_attention(q, k, v, ei, dropout=0.5)
    torch.manual_seed(5)
    b = ga.graph_attention(q, k, v, ei, dropout=0.5)
    assert torch.equal(a, b) and not torch.equal(a, ga.graph_attention(q, k, v, ei, dropout=0.5))
    assert not torch.allclose(a, ga.graph_attention(q, k, v, ei))
    assert torch.isfinite(a).all()


def test_every_weight_of_a_row_dropped_gives_zero_not_nan():
    """With p close to 1 most rows lose every edge: their output and gradients are zero."""
    ei, csr = _graph()
    leaves = [torch.randn(9, 2, 4, dtype=DT, requires_grad=True) for _ in range(3)]
    out = sk.attention(*leaves, csr, dropout=0.99, seed=torch.tensor([3]))
    grads = torch.autograd.grad(out.sum(), leaves)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    assert (out == 0).all(-1).any()


def test_bad_dropout_is_rejected_before_any_work():
    ei, csr = _graph()
    q = torch.randn(9, 2, 4)
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            ga.graph_attention(q, q, q, ei, dropout=p)


# --------------------------------------------------------------------------- the 64-bit counter
def _mix(x):
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def _keep_32bit_counter(edge, heads, seed, p_threshold):
    """The mask of the former 32-bit counter, written out: ``c = (edge * H + h) mod 2^32``,
    ``u = mix(mix(c + k0) ^ k1)``."""
    k0, k1 = seed & M32, _mix(((seed >> 32) & M32) ^ 0x9E3779B9)
    counter = (edge.unsqueeze(-1) * heads + torch.arange(heads)) & M32
    return (_mix(_mix((counter + k0) & M32) ^ k1) >> 8) >= p_threshold


@pytest.mark.parametrize("heads", [1, 3, 8])
@pytest.mark.parametrize("seed", [0, 2024, (5 << 32) + 2024, (1 << 62) - 1])
def test_counters_below_2_32_keep_the_32_bit_masks(heads, seed):
    top = 2 ** 32 // heads                            # edges below it have counters below 2^32
    edges = torch.cat([torch.arange(5000), torch.randint(0, top, (5000,)), torch.arange(top - 100, top)])
    for p in (0.1, 0.5, 0.9):
        got = drop.keep_mask(edges, heads, torch.tensor([seed]), drop.threshold(p))
        assert torch.equal(got, _keep_32bit_counter(edges, heads, seed, drop.threshold(p)))


def test_masks_recorded_before_the_64_bit_counter():
    """Bits of the masks as the 32-bit counter gave them (recorded from the former implementation)."""
    edges = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1000, 2 ** 32 // 3 - 1])
    mask = drop.keep_mask(edges, 3, torch.tensor([(5 << 32) + 2024]), drop.threshold(0.5))
    assert "".join("1" if b else "0" for b in mask.flatten().tolist()) == "010111111100111100100001001001"


@pytest.mark.parametrize("heads", [1, 4, 8])
@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("base", [0, 3 << 33])
def test_edges_2_32_over_h_apart_have_independent_masks(heads, p, base):
    r"""Counters ``c`` and ``c + 2^32`` share their low half; the 32-bit counter gave them one mask. Two
    independent masks agree on a fraction :math:`q = p^2 + (1-p)^2` of the ``n = 4096 H`` pairs; the
    tolerance is 5 binomial standard deviations :math:`\sqrt{q(1-q)/n}` (e.g. 0.0195 at p = 0.5, H = 4)."""
    edges = base // heads + torch.arange(4096)
    seed, t = torch.tensor([987654321987]), drop.threshold(p)
    first = drop.keep_mask(edges, heads, seed, t)
    q = p * p + (1 - p) * (1 - p)
    tolerance = 5 * math.sqrt(q * (1 - q) / first.numel())
    for shift in (1, 2):
        other = drop.keep_mask(edges + shift * 2 ** 32 // heads, heads, seed, t)
        agree = (first == other).double().mean().item()
        assert abs(agree - q) < tolerance, (shift, agree, q, tolerance)
        assert abs(other.double().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / first.numel())


def _edges_above_2_32(heads):
    """Edge ids whose counters reach past 2^32: around every multiple of 2^32 / H up to 4, around 2^40,
    and up to counters near 2^63."""
    around = [k * 2 ** 32 // heads + d for k in range(1, 5) for d in range(-40, 40)]
    return torch.tensor(around + [2 ** 40 + d for d in range(40)] + [(2 ** 63 - 1) // heads - d for d in range(40)])


@needs_cpu_kernels
@pytest.mark.parametrize("heads", [1, 3, 4])
def test_cpu_counter_equals_the_reference_above_2_32(heads):
    edges, seed = _edges_above_2_32(heads), (3 << 40) + 17
    for p in (0.2, 0.5):
        want = drop.keep_mask(edges, heads, torch.tensor([seed]), drop.threshold(p))
        assert torch.equal(sk.cpu.dropout_keep(edges, heads, seed, drop.threshold(p)), want)


@needs_cpu_kernels
@pytest.mark.parametrize("heads", [1, 3])
def test_dense_block_factors_of_rows_crossing_2_32(heads, monkeypatch):
    """The compiled dense-block factors (a fast path for rows whose counters share their high half, a
    per-counter path for rows crossing a multiple of 2^32) equal the PyTorch hash's."""
    n = 9
    starts = [2 ** 32 // heads - 4, 2 ** 32 // heads + 1, 3 * 2 ** 32 // heads - n // 2, 0, 2 ** 40]
    bucket = dense_blocks.Bucket(n, torch.tensor([n, n, n, 5, n]), torch.zeros(5 * n, dtype=torch.long),
                                 torch.tensor(starts)[:, None] + torch.arange(n) * n, padded=True)
    call = SimpleNamespace(q=torch.zeros(1, heads, 1, dtype=DT), dropout=0.5, seed=torch.tensor([424242]))
    compiled = dense_blocks._dropout_factors(bucket, call)
    monkeypatch.setattr(sk.cpu, "available", lambda: False)
    assert torch.equal(compiled, dense_blocks._dropout_factors(bucket, call))


@triton.jit
def _counter_kernel(counter_ptr, seed_ptr, out_ptr, n, threshold, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    counter = tl.load(counter_ptr + offs, mask=mask, other=0)
    key0, key1 = dropout_keys(seed_ptr)
    tl.store(out_ptr + offs, dropout_factor(counter, key0, key1, threshold, 1.0), mask=mask)


@needs_interpreter
@pytest.mark.parametrize("heads", [1, 3, 4])
def test_triton_counter_equals_the_reference_above_2_32(heads):
    edges, seed = _edges_above_2_32(heads), torch.tensor([(3 << 40) + 17])
    counters = (edges[:, None] * heads + torch.arange(heads)).flatten()
    block = triton.next_power_of_2(counters.numel())
    for p in (0.2, 0.5):
        t = drop.threshold(p)
        factor = torch.empty(counters.numel())
        _counter_kernel[(1,)](counters, seed, factor, counters.numel(), t, BLOCK=block)
        assert torch.equal(factor.view(-1, heads) != 0, drop.keep_mask(edges, heads, seed, t))
