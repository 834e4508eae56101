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


def grads(csr, q, k, v, bias, normalizer, grad_out):
    leaves = [t.detach().requires_grad_() for t in (q, k, v, bias)]
    out = sk.attention(*leaves[:3], csr, bias=leaves[3], normalizer=normalizer)
    return [out, *torch.autograd.grad(out, leaves, grad_out)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_fused_attention_matches_reference(dtype, normalizer):
    csr = skewed_graph()
    n, h = csr.num_dst_nodes, 4
    q, k = (torch.randn(n, h, 64, device="cuda").to(dtype) for _ in range(2))
    v, grad_out = (torch.randn(n, h, 32, device="cuda").to(dtype) for _ in range(2))
    bias = torch.randn(csr.num_edges, h, device="cuda").to(dtype)
    got = grads(csr, q, k, v, bias, normalizer, grad_out)
    ref_out, stat = reference.attention_forward(q.double(), k.double(), v.double(), csr.row, csr.col, bias.double(),
                                                64 ** -0.5, normalizer)
    want = [ref_out, *reference.attention_backward(grad_out.double(), q.double(), k.double(), v.double(), ref_out,
                                                   stat, csr.row, csr.col, bias.double(), 64 ** -0.5, normalizer)]
    for name, g, w in zip(["out", "dq", "dk", "dv", "dbias"], got, want):
        assert not torch.isnan(g).any(), name
        assert rel_err(g, w) <= TOL[dtype], f"{name}: {rel_err(g, w)}"
    assert (got[0][n - 100:] == 0).all()  # rows without edges


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
    bias = torch.randn(csr.num_edges, 8, device="cuda", dtype=torch.bfloat16)
    first, second = grads(csr, q, k, v, bias, "softmax", grad_out), grads(csr, q, k, v, bias, "softmax", grad_out)
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
