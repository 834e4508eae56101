"""Edge-vector attention (``edge_k`` added to each edge's key, ``edge_v`` to its value) against the
float64 dense attention oracle (``helpers.dense_attention``: dense score matrices with plain autograd).
Every CPU kernel set runs it: the compiled CPU kernels and both paths of the plain-PyTorch reference."""
import pytest
import torch

import graphattn as ga
import sparse_kernels as sk
import sparse_kernels.reference as reference
from helpers import dense_attention, random_graph

DT = torch.float64


@pytest.fixture(params=["cpu", "reference", "reference-sparse"])
def kernels(request, monkeypatch):
    """Runs the test on one CPU kernel set."""
    if request.param == "cpu":
        if not sk.cpu.available():
            pytest.skip(f"compiled CPU kernels unavailable: {sk.cpu.load_error()}")
        features = sk.dispatch.Features(DT, edge_vectors=True)
        assert sk.dispatch.select_kernels("attention_fwd", "cpu", features).name == "cpu"
        yield request.param
        return
    if request.param == "reference-sparse":
        monkeypatch.setattr(reference, "SPARSE_MIN_ELEMENTS", 0)
    with sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS):
        yield request.param


CASES = {
    "shuffled": dict(num_src=11, num_dst=11, num_edges=45, self_loops=True, isolated=2),
    "bipartite": dict(num_src=7, num_dst=13, num_edges=40, isolated=1),
    "hub": dict(num_src=30, num_dst=20, num_edges=150, hub=True),
}


def _inputs(case, heads=3, dim=5, dim_v=4, seed=0):
    spec = CASES[case]
    ei = random_graph(spec["num_src"], spec["num_dst"], spec["num_edges"], self_loops=spec.get("self_loops", False),
                      hub=spec.get("hub", False), isolated=spec.get("isolated", 0), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    n_src, n_dst, e = spec["num_src"], spec["num_dst"], ei.size(1)
    tensors = dict(q=torch.randn(n_dst, heads, dim, dtype=DT, generator=g),
                   k=torch.randn(n_src, heads, dim, dtype=DT, generator=g),
                   v=torch.randn(n_src, heads, dim_v, dtype=DT, generator=g),
                   edge_k=torch.randn(e, heads, dim, dtype=DT, generator=g),
                   edge_v=torch.randn(e, heads, dim_v, dtype=DT, generator=g),
                   bias=torch.randn(e, heads, dtype=DT, generator=g))
    return ei, ga.AttentionGraph(ei, n_src, n_dst), tensors


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.parametrize("which", ["both", "edge_k", "edge_v"])
def test_outputs_and_gradients_match_oracle(kernels, case, normalizer, which):
    ei, graph, t = _inputs(case)
    if which == "edge_k":
        t["edge_v"] = None
    elif which == "edge_v":
        t["edge_k"] = None
    names = [n for n in ("q", "k", "v", "edge_k", "edge_v", "bias") if t[n] is not None]
    leaves = {n: t[n].clone().requires_grad_() for n in names}
    full = {n: leaves.get(n) for n in ("q", "k", "v", "edge_k", "edge_v", "bias")}
    grad_out = torch.randn(graph.num_dst_nodes, 3, 4, dtype=DT)
    out = ga.graph_attention(full["q"], full["k"], full["v"], graph, edge_k=full["edge_k"], edge_v=full["edge_v"],
                             bias=full["bias"], scale=0.6, normalizer=normalizer)
    ref = dense_attention(full["q"], full["k"], full["v"], ei, full["bias"], 0.6, normalizer, full["edge_k"],
                          full["edge_v"])
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    got = torch.autograd.grad(out, list(leaves.values()), grad_out)
    want = torch.autograd.grad(ref, list(leaves.values()), grad_out)
    for name, a, b in zip(leaves, got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m: f"d{name}: {m}")


def test_shared_edge_tensor_accumulates_both_gradients(kernels):
    """TransformerConv passes one projection as both edge_k and edge_v: its gradient is the sum."""
    ei, graph, t = _inputs("shuffled", dim_v=5)
    t["v"] = torch.randn(graph.num_src_nodes, 3, 5, dtype=DT)
    edge = t["edge_k"].clone().requires_grad_()
    out = ga.graph_attention(t["q"], t["k"], t["v"], graph, edge_k=edge, edge_v=edge)
    (got,) = torch.autograd.grad(out.square().sum(), edge)
    ek, ev = (t["edge_k"].clone().requires_grad_() for _ in range(2))
    ref = dense_attention(t["q"], t["k"], t["v"], ei, edge_k=ek, edge_v=ev)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    dk, dv = torch.autograd.grad(ref.square().sum(), (ek, ev))
    torch.testing.assert_close(got, dk + dv, atol=1e-10, rtol=1e-10)


def test_gradcheck_with_edge_vectors_and_dropout(kernels):
    ei, graph, t = _inputs("bipartite", heads=2, dim=3, dim_v=2)
    seed = torch.tensor([2024])
    inputs = tuple(t[n].clone().requires_grad_() for n in ("q", "k", "v", "edge_k", "edge_v", "bias"))

    def f(q, k, v, edge_k, edge_v, bias):
        csr = sk.build_csr(ei, graph.num_src_nodes, graph.num_dst_nodes)
        return sk.attention(q, k, v, csr, bias, edge_k=edge_k, edge_v=edge_v, dropout=0.3, seed=seed)

    assert torch.autograd.gradcheck(f, inputs)


def test_edge_vector_shapes_and_dtypes_are_checked():
    ei, graph, t = _inputs("shuffled")
    with pytest.raises(ValueError, match="edge_k must have shape"):
        ga.graph_attention(t["q"], t["k"], t["v"], graph, edge_k=t["edge_k"][:-1])
    with pytest.raises(ValueError, match="edge_v must have shape"):
        ga.graph_attention(t["q"], t["k"], t["v"], graph, edge_v=t["edge_k"])       # Dv = 4, not 5
    with pytest.raises(TypeError, match="edge_k must have the dtype of q"):
        ga.graph_attention(t["q"], t["k"], t["v"], graph, edge_k=t["edge_k"].float())
