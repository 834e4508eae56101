"""Static sequence patterns: rule vs edges, composition, batching, caching, and equality with
dense masked scaled_dot_product_attention (float64)."""
import pytest
import torch
from helpers import dense_attention

from graphattn import AttentionGraph, graph_attention
from graphattn.seq import patterns as P

PATTERNS = [
    P.Full(), P.Causal(), P.SlidingWindow(3), P.SlidingWindow(4, causal=True), P.Dilated(2, 3),
    P.Dilated(3, 2, causal=True), P.Blocks(5), P.Blocks(6, causal=True), P.Strided(4), P.Strided(5, causal=True),
    P.GlobalTokens(3), P.GlobalTokens((0, 10, 30), causal=True), P.RandomKeys(4, seed=1),
    P.RandomKeys(3, seed=2, causal=True),
    P.SlidingWindow(2, causal=True) | P.GlobalTokens(2, causal=True),
    (P.Strided(3) | P.Blocks(4)) & P.Causal(),
    P.SlidingWindow(5) | P.RandomKeys(2) | P.GlobalTokens(1),
]


def _mask_edges(mask):
    i, j = mask.nonzero(as_tuple=True)
    return torch.stack([j, i])


def _check_against_dense(graph, mask, heads=2, d=5):
    n = mask.size(0)
    q, k, v = (torch.randn(n, heads, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    out = graph_attention(q, k, v, graph)
    ref = dense_attention(q, k, v, _mask_edges(mask))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_pattern_edges_match_rule_and_dense_sdpa(pattern):
    n = 37
    graph = pattern.graph(n)
    mask = graph.dense_mask()                     # from the rule, independent of the edges
    assert torch.equal(graph.to_dense(), mask)
    assert graph.num_edges == int(mask.sum())     # no duplicate edges
    assert bool((graph.edge_index[1][1:] >= graph.edge_index[1][:-1]).all())
    _check_against_dense(graph, mask)


@pytest.mark.parametrize("pattern", [P.Causal(), P.SlidingWindow(3, causal=True) | P.GlobalTokens(2, causal=True),
                                     P.Dilated(2, 2), P.RandomKeys(3, seed=4)], ids=repr)
def test_batched_variable_lengths(pattern):
    lengths = [7, 1, 0, 23, 12]
    graph = pattern.batch(lengths)
    assert graph.seq_lengths == tuple(lengths)
    mask = graph.dense_mask()
    starts = torch.tensor([0, 7, 8, 8, 31])
    expect = torch.zeros(43, 43, dtype=torch.bool)
    for s, n in zip(starts.tolist(), lengths):
        expect[s:s + n, s:s + n] = pattern.graph(n).to_dense()
    assert torch.equal(graph.to_dense(), expect) and torch.equal(mask, expect)
    _check_against_dense(graph, mask)


def test_union_intersection_of_graphs_and_specs():
    n = 29
    a, b = P.sliding_window(n, 3), P.strided(n, 4, causal=True)
    assert torch.equal((a | b).to_dense(), a.to_dense() | b.to_dense())
    assert torch.equal((a & b).to_dense(), a.to_dense() & b.to_dense())
    assert torch.equal((a | b).to_dense(), (P.SlidingWindow(3) | P.Strided(4, True)).graph(n).to_dense())
    assert (a | b).pattern == P.SlidingWindow(3) | P.Strided(4, True)
    with pytest.raises(ValueError, match="same sequences"):
        _ = a | P.sliding_window(n + 1, 3)


def test_functional_constructors_cache_and_batch():
    P.clear_cache()
    g1 = P.sliding_window(40, 5, causal=True)
    assert P.sliding_window(40, 5, causal=True) is g1                     # cached per (pattern, n, device)
    assert P.sliding_window(41, 5, causal=True) is not g1
    assert P.SlidingWindow(5, True).batch([3, 4]) is P.SlidingWindow(5, True).batch([3, 4])
    b = P.batch([P.causal(3), P.full(2)])
    assert b.pattern is None and b.seq_lengths == (3, 2)
    assert torch.equal(b.to_dense()[3:, 3:], torch.ones(2, 2, dtype=torch.bool))
    assert P.full(0).num_edges == 0
    assert P.global_tokens(10, [2, 7]).num_edges == 2 * 10 + 8 * 2
    assert P.random(50, 3, seed=5).num_edges == P.random(50, 3, seed=5).num_edges
    assert P.dilated(9, 1, 3).num_edges > 0 and P.blocks(9, 4).num_edges == 4 * 4 + 4 * 4 + 1


def test_edges_are_built_without_dense_matrix_for_long_sequences():
    n = 20000
    g = (P.SlidingWindow(64, causal=True) | P.GlobalTokens(4, causal=True)).graph(n)
    i = torch.arange(n)
    expect = (torch.clamp(i, max=64) + 1 + torch.clamp(i - 64, min=0).clamp(max=4)).sum()
    assert g.num_edges == int(expect)


@pytest.mark.parametrize("bad", [lambda: P.SlidingWindow(-1), lambda: P.Blocks(0), lambda: P.Dilated(2, 0),
                                 lambda: P.Strided(0), lambda: P.GlobalTokens((-1,)), lambda: P.RandomKeys(0),
                                 lambda: P.Causal().graph(-3), lambda: P.Causal().batch([]),
                                 lambda: P.batch([])])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        bad()


def test_batch_rejects_plain_graphs():
    with pytest.raises(TypeError, match="SeqGraph"):
        P.batch([AttentionGraph(P.causal(3).edge_index, 3)])
    moved = P.sliding_window(9, 2).to("cpu")
    assert isinstance(moved, P.SeqGraph) and torch.equal(moved.to_dense(), P.sliding_window(9, 2).to_dense())


def test_cache_is_bounded_by_edges(monkeypatch):
    P.clear_cache()
    monkeypatch.setattr(P, "CACHE_MAX_EDGES", 2000)
    a = P.full(40)                       # 1600 edges
    P.full(41)                           # 1681: the older graph is dropped
    assert P.full(40) is not a
    assert len(P._CACHE) == 1
