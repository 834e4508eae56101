"""Unfused Triton ops (sddmm -> edge_softmax -> spmm, with autograd) in the interpreter vs float64."""
import pytest
import torch

import sparse_kernels as sk
from sparse_kernels.triton import chunk_override, interpreter_backend
from sparse_kernels.triton._common import interpreting

from test_triton_attention import TOL, make_graph, rel_err

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(not interpreting(), reason="CPU tests of the kernels need TRITON_INTERPRET=1")]


def pipeline(csr, q, k, v, normalizer, weight):
    """scores -> weights -> aggregation, and the gradients of a weighted sum of the output."""
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    scores = sk.sddmm(leaves[0], leaves[1], csr)
    weights = sk.edge_softmax(scores, csr, normalizer)
    out = sk.spmm(weights, leaves[2], csr)
    grads = torch.autograd.grad((out * weight).sum(), leaves, allow_unused=True)
    return [scores, weights, out, *grads]


@pytest.mark.parametrize("kind,normalizer,dtype", [
    ("hub", "softmax", torch.float32), ("hub", "sigmoid", torch.float32), ("hub", "softplus", torch.float32),
    ("random", "softmax", torch.float16), ("empty", "softmax", torch.float32)])
def test_unfused_ops_match_reference(kind, normalizer, dtype):
    csr = make_graph(kind)
    heads = 3
    q = torch.randn(csr.num_dst_nodes, heads, 16).to(dtype)
    k = torch.randn(csr.num_src_nodes, heads, 16).to(dtype)
    v = torch.randn(csr.num_src_nodes, heads, 8).to(dtype)
    weight = torch.randn(csr.num_dst_nodes, heads, 8).to(dtype)
    with interpreter_backend(), chunk_override(16):
        got = pipeline(csr, q, k, v, normalizer, weight)
    # fp32 against float64; fp16 against the reference ops on the same fp16 inputs, which round the
    # intermediate scores and weights to fp16 between the ops exactly as the kernels do
    d = (lambda t: t.double()) if dtype == torch.float32 else (lambda t: t)  # noqa: E731
    want = pipeline(csr, d(q), d(k), d(v), normalizer, d(weight))
    for name, g, w in zip(["scores", "weights", "out", "dq", "dk", "dv"], got, want):
        assert g.dtype == dtype and not torch.isnan(g).any(), name
        assert rel_err(g, w) <= TOL[dtype], f"{name}: {rel_err(g, w)}"


def test_unfused_gradients_are_bitwise_deterministic():
    csr = make_graph("hub")
    q, k, v, weight = (torch.randn(30, 2, 16) for _ in range(4))
    with interpreter_backend(), chunk_override(16):
        first = pipeline(csr, q, k, v, "softmax", weight)
        second = pipeline(csr, q, k, v, "softmax", weight)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
