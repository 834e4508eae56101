"""Fused Triton attention (forward + backward) in the CPU interpreter against the float64 reference.

Graphs are tiny (the interpreter costs about a millisecond per program) but awkward: empty rows,
one row holding half the edges (split into chunks by the plan), N = 1, E = 0, a bipartite graph,
sizes that are not multiples of the blocks, head counts that are not powers of two.
"""
import pytest
import torch

import sparse_kernels as sk
from sparse_kernels import reference
from sparse_kernels.triton import chunk_override, interpreter_backend
from sparse_kernels.triton._common import interpreting

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(not interpreting(), reason="CPU tests of the kernels need TRITON_INTERPRET=1")]

TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def make_graph(kind: str) -> sk.CSR:
    """A small CSR of the given kind (seeded by the autouse fixture)."""
    if kind == "random":  # bipartite, rows 17..22 empty
        n_src, n_dst, e = 17, 23, 137
        ei = torch.stack([torch.randint(0, n_src, (e,)), torch.randint(0, n_dst - 6, (e,))])
    elif kind == "hub":  # row 4 holds half the edges, source 7 a quarter: both passes split
        n_src = n_dst = 30
        e = 200
        ei = torch.stack([torch.randint(0, n_src, (e,)), torch.randint(0, n_dst, (e,))])
        ei[1, : e // 2] = 4
        ei[0, e // 2: 3 * e // 4] = 7
    elif kind == "single":  # N = 1 with repeated self-edges
        n_src = n_dst = 1
        ei = torch.zeros(2, 5, dtype=torch.long)
    elif kind == "empty":  # E = 0
        n_src, n_dst = 4, 5
        ei = torch.zeros(2, 0, dtype=torch.long)
    else:
        raise ValueError(kind)
    return sk.build_csr(ei, n_src, n_dst)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Max error relative to the largest reference entry (at least 1: the inputs are O(1), and a
    gradient that cancels to ~0, such as ``dq`` when every key of a row is the same, has no scale)."""
    if ref.numel() == 0:
        return 0.0
    x, ref = x.double(), ref.double()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(x)), "non-finite entries differ"
    return ((x - ref)[finite].abs().max() / ref[finite].abs().max().clamp_min(1.0)).item() if finite.any() else 0.0


def run_attention(csr, q, k, v, bias, normalizer, grad_out):
    """out, stat and all gradients through the public op API."""
    leaves = [t.detach().requires_grad_() for t in (q, k, v)] + (
        [bias.detach().requires_grad_()] if bias is not None else [])
    b = leaves[3] if bias is not None else None
    out, stat = sk.attention_with_stats(*leaves[:3], csr, bias=b, scale=0.37, normalizer=normalizer)
    grads = torch.autograd.grad(out, leaves, grad_out, allow_unused=True)
    return [out, stat, *grads]


def check(kind, normalizer, dtype, heads, dim, dim_v, with_bias, chunk=16):
    csr = make_graph(kind)
    n_dst, n_src, e = csr.num_dst_nodes, csr.num_src_nodes, csr.num_edges
    q = torch.randn(n_dst, heads, dim).to(dtype)
    k = torch.randn(n_src, heads, dim).to(dtype)
    v = torch.randn(n_src, heads, dim_v).to(dtype)
    bias = torch.randn(e, heads).to(dtype) if with_bias else None
    grad_out = torch.randn(n_dst, heads, dim_v).to(dtype)
    with interpreter_backend(), chunk_override(chunk):
        got = run_attention(csr, q, k, v, bias, normalizer, grad_out)
    assert hasattr(csr.rowptr, "_sparse_kernels_plans"), "the Triton path did not run"
    d = lambda t: None if t is None else t.double()  # noqa: E731
    with sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS):
        want = run_attention(csr, d(q), d(k), d(v), d(bias), normalizer, d(grad_out))
    names = ["out", "stat", "dq", "dk", "dv", "dbias"]
    for name, g, w in zip(names, got, want):
        if w is None:
            continue
        assert g.dtype == (torch.float32 if name == "stat" else dtype), name
        assert not torch.isnan(g).any(), name
        assert rel_err(g, w) <= TOL[dtype], f"{name}: {rel_err(g, w)}"
    return csr, got


@pytest.mark.parametrize("kind", ["random", "hub", "single", "empty"])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_fp32_matches_reference(kind, normalizer):
    csr, (out, stat, *_) = check(kind, normalizer, torch.float32, heads=3, dim=16, dim_v=12, with_bias=True)
    empty_rows = csr.degree() == 0
    assert (out[empty_rows] == 0).all()
    if normalizer != "sigmoid":
        assert torch.isinf(stat[empty_rows]).all()


@pytest.mark.parametrize("kind", ["random", "hub"])
@pytest.mark.parametrize("normalizer", ["softmax", "softplus"])
def test_fp16_matches_reference(kind, normalizer):
    check(kind, normalizer, torch.float16, heads=2, dim=48, dim_v=64, with_bias=kind == "hub")


@pytest.mark.parametrize("dim,dim_v", [(1, 1), (96, 32)])
def test_head_widths(dim, dim_v):
    check("random", "softmax", torch.float32, heads=2, dim=dim, dim_v=dim_v, with_bias=False)


def test_unsplit_plan_matches_split_plan():
    """The split-K combine and the single-pass path agree (both against the reference)."""
    check("hub", "softmax", torch.float32, heads=1, dim=16, dim_v=16, with_bias=True, chunk=1024)


def test_gradients_are_bitwise_deterministic():
    csr = make_graph("hub")
    q, k, v = (torch.randn(30, 2, 16) for _ in range(3))
    bias, grad_out = torch.randn(csr.num_edges, 2), torch.randn(30, 2, 16)
    with interpreter_backend(), chunk_override(16):
        first = run_attention(csr, q, k, v, bias, "softmax", grad_out)
        second = run_attention(csr, q, k, v, bias, "softmax", grad_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_rows_with_only_masked_scores_give_zeros_not_nan():
    csr = make_graph("hub")
    q, k, v = (torch.randn(30, 2, 16) for _ in range(3))
    bias = torch.zeros(csr.num_edges, 2)
    bias[csr.perm[csr.row == 4]] = float("-inf")  # the hub row: every score is -inf (user edge order)
    with interpreter_backend():
        out, stat, dq, dk, dv, dbias = run_attention(csr, q, k, v, bias, "softmax", torch.randn(30, 2, 16))
    assert (out[4] == 0).all() and torch.isinf(stat[4]).all()
    for g in (out, dq, dk, dv, dbias):
        assert not torch.isnan(g).any()
    ref_out, ref_stat = reference.attention_forward(q, k, v, csr.row, csr.col, bias, 0.37, "softmax", eid=csr.perm)
    assert rel_err(out, ref_out) <= 1e-5


def test_float64_falls_back_to_reference():
    csr = make_graph("random")
    q = torch.randn(23, 1, 8, dtype=torch.float64)
    k, v = torch.randn(17, 1, 8, dtype=torch.float64), torch.randn(17, 1, 8, dtype=torch.float64)
    with interpreter_backend():
        out = sk.attention(q, k, v, csr)
    ref = reference.attention_forward(q, k, v, csr.row, csr.col, None, 8 ** -0.5, "softmax")[0]
    assert out.dtype == torch.float64 and torch.allclose(out, ref, rtol=0, atol=1e-12)


def test_compiles_fullgraph_without_recompiling_for_new_sizes():
    """A function of (features, CSR) traces with fullgraph=True; new graph sizes reuse the frame."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()

    @torch.compile(fullgraph=True, dynamic=True, backend=counter)
    def loss_fn(q, k, v, csr):
        return sk.attention(q, k, v, csr, scale=0.25).square().sum()

    torch._dynamo.reset()
    with interpreter_backend():
        for kind in ("random", "hub"):
            csr = make_graph(kind)
            csr.transpose()  # built outside: the transpose sorts (data-dependent shapes)
            q = torch.randn(csr.num_dst_nodes, 2, 16, requires_grad=True)
            k, v = torch.randn(csr.num_src_nodes, 2, 16), torch.randn(csr.num_src_nodes, 2, 16)
            loss = loss_fn(q, k, v, csr)
            (dq,) = torch.autograd.grad(loss, q)
            ref_q = q.detach().double().requires_grad_()
            out = reference.attention_forward(ref_q, k.double(), v.double(), csr.row, csr.col, None, 0.25, "softmax")[0]
            (ref_dq,) = torch.autograd.grad(out.square().sum(), ref_q)
            assert rel_err(loss, out.square().sum()) <= 1e-5 and rel_err(dq, ref_dq) <= 1e-5
    assert counter.frame_count == 1
