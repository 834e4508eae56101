"""Counter-based attention dropout: one mask per (seed, edge, head), the same on every path.

The masks of the plain-PyTorch hash (:mod:`sparse_kernels.dropout`), the compiled CPU kernels and the
dense-block path agree bit for bit; the keep rate is 1 - p; the expectation of the output is the
output without dropout; the mask follows ``torch.manual_seed`` and is regenerated in the backward."""
import contextlib

import pytest
import torch

import graphattn as ga
import sparse_kernels as sk
from sparse_kernels import dropout as drop
from helpers import random_graph

DT = torch.float64
needs_cpu_kernels = pytest.mark.skipif(not sk.cpu.available(), reason="compiled CPU kernels unavailable")


def _graph(num_nodes=9, num_edges=40, seed=0):
    ei = random_graph(num_nodes, num_nodes, num_edges, self_loops=True, seed=seed)
    return ei, ga.AttentionGraph(ei, num_nodes)


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
    ei, graph = _graph()
    q, k, v = (torch.randn(9, 2, 4, dtype=DT) for _ in range(3))
    if kernels == "cpu" and not sk.cpu.available():
        pytest.skip("compiled CPU kernels unavailable")
    override = (sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS) if kernels == "reference"
                else contextlib.nullcontext())
    with override:
        exact = ga.graph_attention(q, k, v, graph)
        samples = torch.stack([sk.attention(q, k, v, graph.csr, dropout=0.3, seed=torch.tensor([s]))
                               for s in range(4000)])
    mean, spread = samples.mean(0), samples.std(0) / 4000 ** 0.5
    assert ((mean - exact).abs() <= 5 * spread + 1e-12).all()


@needs_cpu_kernels
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_cpu_kernels_and_reference_drop_the_same_weights(normalizer):
    ei, graph = _graph(num_nodes=12, num_edges=70)
    tensors = [torch.randn(12, 3, 4, dtype=DT, requires_grad=True) for _ in range(3)]
    edge_v = torch.randn(ei.size(1), 3, 4, dtype=DT, requires_grad=True)
    seed, grad = torch.tensor([77]), torch.randn(12, 3, 4, dtype=DT)
    results = []
    for override in (False, True):
        ctx = (sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS) if override
               else contextlib.nullcontext())
        with ctx:
            out = sk.attention(*tensors, graph.csr, edge_v=edge_v, normalizer=normalizer, dropout=0.5, seed=seed)
            results.append((out, torch.autograd.grad(out, tensors + [edge_v], grad)))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_dropout_follows_manual_seed_and_zero_rows_stay_zero():
    ei, graph = _graph()
    q, k, v = (torch.randn(9, 2, 4) for _ in range(3))
    torch.manual_seed(5)
    a = ga.graph_attention(q, k, v, graph, dropout=0.5)
    torch.manual_seed(5)
    b = ga.graph_attention(q, k, v, graph, dropout=0.5)
    assert torch.equal(a, b) and not torch.equal(a, ga.graph_attention(q, k, v, graph, dropout=0.5))
    assert not torch.allclose(a, ga.graph_attention(q, k, v, graph))
    assert torch.isfinite(a).all()


def test_every_weight_of_a_row_dropped_gives_zero_not_nan():
    """With p close to 1 most rows lose every edge: their output and gradients are zero."""
    ei, graph = _graph()
    leaves = [torch.randn(9, 2, 4, dtype=DT, requires_grad=True) for _ in range(3)]
    out = sk.attention(*leaves, graph.csr, dropout=0.99, seed=torch.tensor([3]))
    grads = torch.autograd.grad(out.sum(), leaves)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    assert (out == 0).all(-1).any()


def test_bad_dropout_is_rejected_before_any_work():
    ei, graph = _graph()
    q = torch.randn(9, 2, 4)
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            ga.graph_attention(q, q, q, graph, dropout=p)
