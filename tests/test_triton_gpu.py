"""The compiled Triton kernels on a real GPU (skipped without CUDA or under the interpreter).

Run on a GPU machine with the interpreter off::

    TRITON_INTERPRET=0 python -m pytest tests/test_triton_gpu.py -q
"""
import pytest
import torch

import sparse_kernels as sk
from sparse_kernels import reference
from sparse_kernels.triton._common import interpreting

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or interpreting(),
                                reason="needs a CUDA GPU and TRITON_INTERPRET=0")

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def skewed_graph(n=3000, e=60000, hub_edges=20000):
    """Random graph with a hub row and a hub source (both split by the plans) and isolated rows."""
    g = torch.Generator().manual_seed(0)
    ei = torch.stack([torch.randint(0, n, (e,), generator=g), torch.randint(0, n - 100, (e,), generator=g)])
    ei[1, :hub_edges] = 7
    ei[0, hub_edges: 2 * hub_edges] = 11
    return sk.build_csr(ei.cuda(), n, n)


def rel_err(x, ref):
    return float((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1.0))


def fused(csr, inputs, normalizer, grad_out, **options):
    """out and the gradients of ``inputs = (q, k, v, bias, edge_k, edge_v)`` (``None`` for absent per-edge
    inputs, which get no gradient; user's edge order) on the CSR path."""
    leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
    q, k, v, bias, edge_k, edge_v = leaves
    out = sk.attention_with_stats(q, k, v, csr, bias=bias, normalizer=normalizer, edge_k=edge_k, edge_v=edge_v,
                                  **options)[0]
    grads = torch.autograd.grad(out, [t for t in leaves if t is not None], grad_out.to(out.dtype))
    return [out.detach(), *grads]


def check_fused(csr, inputs, normalizer, grad_out, **options):
    """:func:`fused` on the Triton kernels against the float64 reference (the same seed: the same dropout
    masks); returns the Triton results."""
    q, _, _, bias, edge_k, edge_v = inputs
    features = sk.dispatch.Features(q.dtype, normalizer, edge_k is not None or edge_v is not None,
                                    options.get("dropout", 0.0) > 0, bias is not None)
    assert sk.dispatch.select_kernels("attention_fwd", "cuda", features).name == "triton"
    got = fused(csr, inputs, normalizer, grad_out, **options)
    with sk.dispatch.kernel_override("reference", "cuda", sk.ops.REFERENCE_KERNELS):
        want = fused(csr, [None if t is None else t.double() for t in inputs], normalizer, grad_out, **options)
    names = ["out", "dq", "dk", "dv"] + [name for name, x in zip(["dbias", "dedge_k", "dedge_v"], inputs[3:])
                                         if x is not None]
    for name, g, w in zip(names, got, want, strict=True):
        assert not torch.isnan(g).any(), name
        assert rel_err(g, w) <= TOL[q.dtype], f"{name}: {rel_err(g, w)}"
    return got


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_fused_attention_matches_reference(dtype, normalizer):
    csr = skewed_graph()
    n, h = csr.num_dst_nodes, 4
    q, k = (torch.randn(n, h, 64, device="cuda").to(dtype) for _ in range(2))
    v, grad_out = (torch.randn(n, h, 32, device="cuda").to(dtype) for _ in range(2))
    bias = torch.randn(csr.num_edges, h, device="cuda").to(dtype)
    out = check_fused(csr, (q, k, v, bias, None, None), normalizer, grad_out)[0]
    assert (out[n - 100:] == 0).all()  # rows without edges


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.parametrize("order", ["shuffled", "sorted"])
def test_edge_vectors_and_dropout_match_reference(dtype, normalizer, order):
    """edge_k, edge_v and a bias in the user's edge order (shuffled: read through ``eid``; sorted: ``eid``
    is ``None``) with dropout: the same seed gives the reference's masks, so every output agrees."""
    csr = skewed_graph(e=20000, hub_edges=5000)
    if order == "sorted":
        csr = sk.csr_from_sorted_rows(csr.row, csr.col, csr.num_src_nodes, csr.num_dst_nodes)
    n, h, e = csr.num_dst_nodes, 4, csr.num_edges
    q, k, edge_k = (torch.randn(m, h, 64, device="cuda").to(dtype) for m in (n, n, e))
    v, grad_out, edge_v = (torch.randn(m, h, 32, device="cuda").to(dtype) for m in (n, n, e))
    bias = torch.randn(e, h, device="cuda").to(dtype)
    seed = sk.dropout.new_seed("cuda")
    check_fused(csr, (q, k, v, bias, edge_k, edge_v), normalizer, grad_out, dropout=0.3, seed=seed)


@pytest.mark.parametrize("dim,dim_v", [(16, 16), (32, 64), (128, 128), (256, 256)])
def test_head_widths(dim, dim_v):
    csr = skewed_graph(e=20000, hub_edges=5000)
    n = csr.num_dst_nodes
    q, k = torch.randn(n, 8, dim, device="cuda"), torch.randn(n, 8, dim, device="cuda")
    v = torch.randn(n, 8, dim_v, device="cuda")
    out = sk.attention(q, k, v, csr)
    ref = reference.attention_forward(q, k, v, csr.row, csr.col, None, dim ** -0.5, "softmax")[0]
    assert rel_err(out, ref) <= 1e-5


def test_gradients_bitwise_deterministic():
    csr = skewed_graph()
    n = csr.num_dst_nodes
    q, k, v, grad_out = (torch.randn(n, 8, 64, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    edge_k, edge_v = (torch.randn(csr.num_edges, 8, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    bias = torch.randn(csr.num_edges, 8, device="cuda", dtype=torch.bfloat16)
    inputs, seed = (q, k, v, bias, edge_k, edge_v), sk.dropout.new_seed("cuda")
    first, second = (fused(csr, inputs, "softmax", grad_out, dropout=0.2, seed=seed) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_unfused_ops_match_reference(normalizer):
    csr = skewed_graph()
    n = csr.num_dst_nodes
    q, k, v, w = (torch.randn(n, 4, 32, device="cuda", requires_grad=True) for _ in range(4))

    def pipeline():
        out = sk.spmm(sk.edge_softmax(sk.sddmm(q, k, csr) * 0.2, csr, normalizer), v, csr)
        return [out, *torch.autograd.grad((out * w).sum(), [q, k, v])]

    got = pipeline()
    with sk.dispatch.kernel_override("reference", "cuda", sk.ops.REFERENCE_KERNELS):
        want = pipeline()
    for g, r in zip(got, want):
        assert rel_err(g, r) <= 1e-5
