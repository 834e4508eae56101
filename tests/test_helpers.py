"""The shared test helpers do what the tests rely on: the dense oracle against a hand computation, and the
random graphs' structure."""
import math

import pytest
import torch

from helpers import dense_attention, masked_weights, random_graph


@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_dense_attention_by_hand(normalizer):
    """Destination 0 reads sources 0 and 2 (with bias and edge vectors), destination 1 nothing."""
    q = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([[[0.5, 0.0]], [[9.0, 9.0]], [[-1.0, 1.0]]], dtype=torch.float64)
    v = torch.tensor([[[1.0]], [[100.0]], [[3.0]]], dtype=torch.float64)
    edge_index = torch.tensor([[2, 0], [0, 0]])
    bias = torch.tensor([[0.25], [-0.5]], dtype=torch.float64)
    edge_k = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]], dtype=torch.float64)
    edge_v = torch.tensor([[[10.0]], [[0.0]]], dtype=torch.float64)
    out = dense_attention(q, k, v, edge_index, bias, 0.5, normalizer, edge_k, edge_v)
    s2 = 0.5 * (1.0 * -1.0 + 2.0 * (1.0 + 1.0)) + 0.25           # edge 2 -> 0: 1.75
    s0 = 0.5 * (1.0 * 0.5) - 0.5                                 # edge 0 -> 0: -0.25
    f = {"softmax": math.exp, "sigmoid": lambda s: 1 / (1 + math.exp(-s)),
         "softplus": lambda s: math.log1p(math.exp(s))}[normalizer]
    a2, a0 = f(s2), f(s0)
    if normalizer != "sigmoid":
        a2, a0 = a2 / (a2 + a0), a0 / (a2 + a0)
    torch.testing.assert_close(out[0, 0], torch.tensor([a2 * (3.0 + 10.0) + a0 * 1.0], dtype=torch.float64))
    assert (out[1] == 0).all()
    (grad,) = torch.autograd.grad(out.sum(), q)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all()


def test_dense_attention_refuses_duplicate_edges():
    x = torch.randn(2, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="duplicate"):
        dense_attention(x, x, x, torch.tensor([[0, 0], [1, 1]]))


def test_masked_weights_rows_without_keys_are_zero():
    scores = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    a = masked_weights(scores, mask)
    torch.testing.assert_close(a[:, [0, 2]].sum(-1), torch.ones(2, 2, dtype=torch.float64))
    assert (a[:, 1] == 0).all() and (a[:, 0, [1, 3]] == 0).all()


def test_random_graph_structure():
    ei = random_graph(9, 12, 40, self_loops=True, isolated=3, seed=1)
    pairs = set(map(tuple, ei.t().tolist()))
    assert len(pairs) == ei.size(1) >= 40                        # duplicate-free, self-loops added
    assert {(i, i) for i in range(9)} <= pairs and (ei[1] < 9).all()
    hub = random_graph(30, 20, 150, hub=True, seed=2)
    degree = torch.bincount(hub[1], minlength=20)
    assert degree[0] > 2 * degree[1:].max()                        # the hub holds the most edges
    assert torch.equal(random_graph(7, 5, 12, seed=3), random_graph(7, 5, 12, seed=3))


def test_random_multigraph_draws_exactly_from_the_global_generator():
    torch.manual_seed(5)
    ei = random_graph(6, 6, 500, multigraph=True, isolated=2, seed=None)
    assert ei.shape == (2, 500) and (ei[1] < 4).all()
    assert len(set(map(tuple, ei.t().tolist()))) < 500             # duplicates fall where they fall
    assert not torch.equal(ei, random_graph(6, 6, 500, multigraph=True, isolated=2, seed=None))
    assert random_graph(0, 0, 0, multigraph=True, seed=None).shape == (2, 0)
