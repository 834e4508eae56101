"""Content-based patterns (top-k, k-means routing, BiFormer region routing) against dense
constructions and dense masked SDPA (float64), including batched variable lengths."""
import pytest
import torch
from helpers import dense_attention

from graphattn import graph_attention
from graphattn.seq import (KMeansRouting, RegionRouting, TopK, causal, full, region_routing_graph,
                           routing_graph, topk_graph)


def _qkv(n, heads=2, d=4):
    return tuple(torch.randn(n, heads, d, dtype=torch.float64, requires_grad=True) for _ in range(3))


def _edges(mask):
    i, j = mask.nonzero(as_tuple=True)
    return torch.stack([j, i])


def _assert_same_attention(graph, q, k, v, mask):
    out = graph_attention(q, k, v, graph)
    ref = dense_attention(q, k, v, _edges(mask))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def _dense_topk_mask(q, k, topk, causal):
    s = q.detach().flatten(1) @ k.detach().flatten(1).T
    n = s.size(0)
    if causal:
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    idx = s.topk(min(topk, n), dim=1).indices
    mask = torch.zeros(n, n, dtype=torch.bool).scatter_(1, idx, True)
    return mask & ~torch.isinf(s)


@pytest.mark.parametrize("causal_", [False, True])
def test_topk_matches_dense_topk_and_sdpa(causal_):
    q, k, v = _qkv(45)
    graph = topk_graph(q, k, 6, causal=causal_, block_size=8)
    mask = _dense_topk_mask(q, k, 6, causal_)
    assert torch.equal(graph.to_dense(), mask)
    _assert_same_attention(graph, q, k, v, mask)


def test_topk_batched_and_k_equals_n_is_full():
    q, k, v = _qkv(30)
    lengths = [11, 0, 19]
    graph = topk_graph(q, k, 4, causal=True, block_size=5, seq_lengths=lengths)
    mask = torch.zeros(30, 30, dtype=torch.bool)
    mask[:11, :11] = _dense_topk_mask(q[:11], k[:11], 4, True)
    mask[11:, 11:] = _dense_topk_mask(q[11:], k[11:], 4, True)
    assert torch.equal(graph.to_dense(), mask)
    _assert_same_attention(graph, q, k, v, mask)
    assert torch.equal(topk_graph(q, k, 30).to_dense(), full(30).to_dense())
    assert torch.equal(topk_graph(q, k, 30, causal=True, block_size=7).to_dense(), causal(30).to_dense())
    out = graph_attention(q, k, v, topk_graph(q, k, 30, causal=True))
    torch.testing.assert_close(out, graph_attention(q, k, v, causal(30)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("causal_", [False, True])
def test_routing_graph_rule_and_sdpa(causal_):
    q, k, v = _qkv(40)
    cq, ck = torch.randint(0, 4, (40,)), torch.randint(0, 4, (40,))
    lengths = [13, 27]
    graph = routing_graph(cq, ck, causal=causal_, seq_lengths=lengths)
    seq = torch.tensor([0] * 13 + [1] * 27)
    mask = (cq[:, None] == ck[None, :]) & (seq[:, None] == seq[None, :])
    if causal_:
        mask &= torch.ones(40, 40, dtype=torch.bool).tril()
    assert torch.equal(graph.to_dense(), mask)
    _assert_same_attention(graph, q, k, v, mask)


def test_kmeans_routing_one_cluster_is_full_and_ema_updates_in_training():
    q, k, v = _qkv(33, heads=2, d=4)
    router = KMeansRouting(dim=8, num_clusters=1, causal=True)
    out = graph_attention(q, k, v, router(q, k))
    torch.testing.assert_close(out, graph_attention(q, k, v, causal(33)), atol=1e-12, rtol=0)
    out = graph_attention(q, k, v, KMeansRouting(dim=8, num_clusters=1)(q, k))
    torch.testing.assert_close(out, graph_attention(q, k, v, full(33)), atol=1e-12, rtol=0)
    router = KMeansRouting(dim=8, num_clusters=3, decay=0.5)
    before = router.centroids.clone()
    router.eval()
    router(q, k)
    assert torch.equal(router.centroids, before)
    router.train()
    graph = router(q, k)
    assert not torch.equal(router.centroids, before)
    torch.testing.assert_close(router.centroids.norm(dim=-1), torch.ones(3))
    assert graph.num_edges > 0
    with pytest.raises(ValueError, match="router expects"):
        KMeansRouting(dim=5, num_clusters=2)(q, k)


def _dense_region_mask(q, k, r, topk, causal_):
    n = q.size(0)
    num_r = -(-n // r)
    region = torch.arange(n) // r
    qbar = torch.stack([q.detach().flatten(1)[region == a].mean(0) for a in range(num_r)])
    kbar = torch.stack([k.detach().flatten(1)[region == a].mean(0) for a in range(num_r)])
    aff = qbar @ kbar.T
    if causal_:
        aff = aff.masked_fill(torch.ones(num_r, num_r, dtype=torch.bool).triu(1), float("-inf"))
    idx = aff.topk(min(topk, num_r), dim=1).indices
    routed = torch.zeros(num_r, num_r, dtype=torch.bool).scatter_(1, idx, True) & ~torch.isinf(aff)
    mask = routed[region][:, region]
    return mask & torch.ones(n, n, dtype=torch.bool).tril() if causal_ else mask


@pytest.mark.parametrize("causal_", [False, True])
def test_region_routing_matches_dense_construction(causal_):
    q, k, v = _qkv(43)
    graph = region_routing_graph(q, k, 6, 3, causal=causal_)
    mask = _dense_region_mask(q, k, 6, 3, causal_)
    assert torch.equal(graph.to_dense(), mask)
    _assert_same_attention(graph, q, k, v, mask)
    assert torch.equal(region_routing_graph(q, k, 6, 8, causal=causal_).to_dense(),
                       (causal if causal_ else full)(43).to_dense())


def test_content_modules_and_errors():
    q, k, _ = _qkv(20)
    assert torch.equal(TopK(3)(q, k).to_dense(), topk_graph(q, k, 3).to_dense())
    assert torch.equal(RegionRouting(4, 2)(q, k, [8, 12]).to_dense(),
                       region_routing_graph(q, k, 4, 2, seq_lengths=[8, 12]).to_dense())
    with pytest.raises(ValueError, match="topk"):
        topk_graph(q, k, 0)
    with pytest.raises(ValueError, match="seq_lengths"):
        topk_graph(q, k, 2, seq_lengths=[3, 4])
    with pytest.raises(ValueError, match="k must"):
        topk_graph(q, k[:5], 2)
    with pytest.raises(ValueError, match="region_size"):
        region_routing_graph(q, k, 0, 2)


def test_region_routing_batched_matches_dense():
    q, k, v = _qkv(43)
    graph = region_routing_graph(q, k, 5, 2, causal=True, seq_lengths=[17, 26])
    mask = torch.zeros(43, 43, dtype=torch.bool)
    mask[:17, :17] = _dense_region_mask(q[:17], k[:17], 5, 2, True)
    mask[17:, 17:] = _dense_region_mask(q[17:], k[17:], 5, 2, True)
    assert torch.equal(graph.to_dense(), mask)
    _assert_same_attention(graph, q, k, v, mask)


def test_content_pattern_union_with_static_pattern():
    from graphattn.seq import SlidingWindow, sliding_window

    q, k, v = _qkv(26)
    router = KMeansRouting(dim=8, num_clusters=4, causal=True).eval()
    combined = router | SlidingWindow(3, causal=True)
    graph = combined(q, k, [10, 16])
    expect = router(q, k, [10, 16]).to_dense() | SlidingWindow(3, causal=True).batch([10, 16]).to_dense()
    assert torch.equal(graph.to_dense(), expect)
    _assert_same_attention(graph, q, k, v, expect)
    assert torch.equal((TopK(2) | SlidingWindow(1))(q, k).to_dense(),
                       topk_graph(q, k, 2).to_dense() | sliding_window(26, 1).to_dense())
    with pytest.raises(TypeError):
        TopK(2) | "window"
