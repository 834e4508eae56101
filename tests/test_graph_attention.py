"""graph_attention against dense masked attention, gradients, edge cases and compile."""
import pytest
import torch

import graphattn as ga
import sparse_kernels.reference as reference
from helpers import dense_attention, masked_weights, random_graph

DT = torch.float64

CASES = {
    "square": dict(num_src=13, num_dst=13, num_edges=60),
    "self_loops_isolated": dict(num_src=11, num_dst=11, num_edges=30, self_loops=True, isolated=3),
    "bipartite": dict(num_src=9, num_dst=17, num_edges=50),
    "bipartite_wide": dict(num_src=23, num_dst=5, num_edges=40, isolated=1),
    "hub": dict(num_src=40, num_dst=31, num_edges=200, hub=True),
    "single_node": dict(num_src=1, num_dst=1, num_edges=1),
    "no_edges": dict(num_src=4, num_dst=3, num_edges=0),
}


@pytest.fixture(params=["gather", "torch.sparse"])
def cpu_path(request, monkeypatch):
    """Runs a test through both CPU paths of the engine: the chunked gathers (what these small
    graphs take by default) and the ``torch.sparse`` CSR products (what large graphs take)."""
    if request.param == "torch.sparse":
        monkeypatch.setattr(reference, "SPARSE_MIN_ELEMENTS", 0)
    return request.param


def _inputs(case, heads=3, dim=5, dim_v=4, seed=0, bias=True):
    spec = CASES[case]
    ei = random_graph(spec["num_src"], spec["num_dst"], spec["num_edges"], self_loops=spec.get("self_loops", False),
                      hub=spec.get("hub", False), isolated=spec.get("isolated", 0), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    q = torch.randn(spec["num_dst"], heads, dim, dtype=DT, generator=g)
    k = torch.randn(spec["num_src"], heads, dim, dtype=DT, generator=g)
    v = torch.randn(spec["num_src"], heads, dim_v, dtype=DT, generator=g)
    b = torch.randn(ei.size(1), heads, dtype=DT, generator=g) if bias else None
    graph = ga.AttentionGraph(ei, spec["num_src"], spec["num_dst"])
    return q, k, v, b, ei, graph


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.usefixtures("cpu_path")
def test_matches_dense(case, normalizer):
    q, k, v, b, ei, graph = _inputs(case)
    out = ga.graph_attention(q, k, v, graph, bias=b, normalizer=normalizer)
    ref = dense_attention(q, k, v, ei, b, normalizer=normalizer)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("case", ["square", "bipartite", "hub", "self_loops_isolated"])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.usefixtures("cpu_path")
def test_gradients_match_dense(case, normalizer):
    q, k, v, b, ei, graph = _inputs(case)
    leaves = [t.requires_grad_() for t in (q, k, v, b)]
    grad_out = torch.randn(q.size(0), q.size(1), v.size(2), dtype=DT)
    ours = torch.autograd.grad((ga.graph_attention(q, k, v, graph, bias=b, normalizer=normalizer) * grad_out).sum(),
                               leaves)
    ref = torch.autograd.grad((dense_attention(q, k, v, ei, b, normalizer=normalizer) * grad_out).sum(), leaves)
    for name, a, r in zip("qkvb", ours, ref):
        torch.testing.assert_close(a, r, atol=1e-6, rtol=1e-6, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.usefixtures("cpu_path")
def test_gradcheck(normalizer):
    q, k, v, b, ei, graph = _inputs("self_loops_isolated", heads=2, dim=3, dim_v=2)
    inputs = tuple(t.requires_grad_() for t in (q, k, v, b))
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: ga.graph_attention(q, k, v, graph, bias=b, normalizer=normalizer), inputs)


@pytest.mark.usefixtures("cpu_path")
def test_gradcheck_unfused_path():
    q, k, v, b, ei, graph = _inputs("bipartite", heads=2, dim=3, dim_v=2)
    inputs = tuple(t.requires_grad_() for t in (q, k, v, b))
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: ga.graph_attention(q, k, v, graph, bias=b, return_weights=True), inputs)


def test_weights_user_order_and_sum_to_one():
    q, k, v, b, ei, graph = _inputs("hub")
    out, w = ga.graph_attention(q, k, v, graph, bias=b, return_weights=True)
    torch.testing.assert_close(out, ga.graph_attention(q, k, v, graph, bias=b))
    scores = (q[ei[1]] * k[ei[0]]).sum(-1) * q.size(-1) ** -0.5 + b
    dense = torch.zeros(q.size(1), q.size(0), k.size(0), dtype=DT)
    dense[:, ei[1], ei[0]] = scores.t()
    mask = torch.zeros(q.size(0), k.size(0), dtype=torch.bool)
    mask[ei[1], ei[0]] = True
    expected = masked_weights(dense, mask)[:, ei[1], ei[0]].t()
    torch.testing.assert_close(w, expected)
    sums = torch.zeros(q.size(0), q.size(1), dtype=DT).index_add_(0, ei[1], w)
    has_edge = graph.in_degree() > 0
    torch.testing.assert_close(sums[has_edge], torch.ones_like(sums[has_edge]))


@pytest.mark.usefixtures("cpu_path")
def test_isolated_node_zero_output_and_grad():
    q, k, v, b, ei, graph = _inputs("self_loops_isolated")
    q.requires_grad_()
    out = ga.graph_attention(q, k, v, graph, bias=b)
    out.sum().backward()
    isolated = graph.in_degree() == 0
    assert isolated.sum() == 3
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()
    assert (out[isolated] == 0).all() and (q.grad[isolated] == 0).all()


@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.usefixtures("cpu_path")
def test_extreme_logits_do_not_overflow(normalizer):
    q, k, v, _, ei, graph = _inputs("hub", bias=False)
    for sign in (1.0, -1.0):
        bias = torch.full((ei.size(1), q.size(1)), sign * 1e4, dtype=torch.float32)
        bias[::3] *= -1
        leaves = [t.float().requires_grad_() for t in (q, k, v)] + [bias.requires_grad_()]
        out = ga.graph_attention(*leaves[:3], graph, bias=leaves[3], normalizer=normalizer)
        out.sum().backward()
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(t.grad).all() for t in leaves)


def test_masked_minus_inf_bias_row_is_zero():
    q, k, v, _, ei, graph = _inputs("square", bias=False)
    bias = torch.zeros(ei.size(1), q.size(1), dtype=DT)
    bias[ei[1] == 0] = float("-inf")
    out = ga.graph_attention(q, k, v, graph, bias=bias)
    assert torch.isfinite(out).all() and (out[0] == 0).all()


def test_accepts_edge_index_and_sparse_adjacency():
    q, k, v, b, ei, graph = _inputs("bipartite", bias=False)
    expected = ga.graph_attention(q, k, v, graph)
    torch.testing.assert_close(ga.graph_attention(q, k, v, ei), expected)
    adj = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)), (q.size(0), k.size(0)))
    torch.testing.assert_close(ga.graph_attention(q, k, v, adj), expected)
    torch.testing.assert_close(ga.graph_attention(q, k, v, adj.to_sparse_csr()), expected)


def test_half_precision_inputs():
    q, k, v, b, ei, graph = _inputs("hub")
    out = ga.graph_attention(q.half(), k.half(), v.half(), graph, bias=b.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.double(), dense_attention(q, k, v, ei, b), atol=2e-2, rtol=2e-2)


def test_dropout_zeroes_weights_and_rescales():
    q, k, v, b, ei, graph = _inputs("hub", heads=1)
    torch.manual_seed(3)
    out = ga.graph_attention(q, k, v, graph, dropout=0.5)
    assert out.shape == (q.size(0), 1, v.size(2)) and torch.isfinite(out).all()
    assert not torch.allclose(out, ga.graph_attention(q, k, v, graph))
    with pytest.raises(ValueError, match="dropout"):
        ga.graph_attention(q, k, v, graph, dropout=1.0)


def test_compile_fullgraph_matches_eager():
    q, k, v, b, ei, graph = _inputs("hub")
    graph.csr.transpose()

    def f(q, k, v, b):
        return ga.graph_attention(q, k, v, graph, bias=b)

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(q, k, v, b), f(q, k, v, b))
    inductor = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(inductor(q, k, v, b), f(q, k, v, b))


def test_compile_backward_and_new_graph_size():
    def f(q, k, v, graph):
        return ga.graph_attention(q, k, v, graph)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager", dynamic=True)
    for case in ("square", "hub"):
        q, k, v, _, ei, graph = _inputs(case, bias=False)
        leaves = [t.requires_grad_() for t in (q, k, v)]
        out = compiled(*leaves, graph)
        grads = torch.autograd.grad(out.sum(), leaves)
        ref = torch.autograd.grad(f(*leaves, graph).sum(), leaves)
        torch.testing.assert_close(out, f(q, k, v, graph))
        for a, r in zip(grads, ref):
            torch.testing.assert_close(a, r)
