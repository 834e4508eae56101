"""Fused Triton attention (forward + backward) in the CPU interpreter against the float64 reference.

Graphs are tiny (the interpreter costs about a millisecond per program) but awkward: empty rows,
one row holding half the edges (split into chunks by the plan), N = 1, E = 0, a bipartite graph,
edges given in CSR order (no edge-id indirection), sizes that are not multiples of the blocks,
head counts that are not powers of two. Per-edge inputs (bias, edge vectors) are in the user's
edge order; with dropout, the Triton kernels and the reference draw the same masks from the seed.
The gat and gatv2 score functions get the same treatment (every gradient, att's included).
"""
import pytest
import torch
import triton
import triton.language as tl

import sparse_kernels as sk
from sparse_kernels import reference
from sparse_kernels.triton import chunk_override, interpreter_backend
from sparse_kernels.triton._common import dropout_factor, dropout_keys, edge_offsets, interpreting, sum_rows

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
    elif kind == "sorted":  # given in CSR order (eid None), bipartite; row 7 holds 40 edges from source 5, rows
        n_src, n_dst = 19, 25  # 3 and 20.. are empty: both passes split
        counts = torch.randint(1, 5, (n_dst,))
        counts[3], counts[7], counts[20:] = 0, 40, 0
        row = torch.repeat_interleave(torch.arange(n_dst), counts)
        col = torch.randint(0, n_src, (row.numel(),))
        col[row == 7] = 5
        csr = sk.csr_from_sorted_rows(row, col, n_src, n_dst)
        assert csr.eid is None
        return csr
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


NAMES = ["out", "stat", "dq", "dk", "dv", "dbias", "dedge_k", "dedge_v"]


def run_attention(csr, inputs, normalizer, grad_out, dropout=0.0, seed=None):
    """out, stat and the gradients of ``inputs = (q, k, v, bias, edge_k, edge_v)`` (``None`` for absent
    ones, and for their gradients) through the public op API."""
    leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
    q, k, v, bias, edge_k, edge_v = leaves
    out, stat = sk.attention_with_stats(q, k, v, csr, bias=bias, scale=0.37, normalizer=normalizer, edge_k=edge_k,
                                        edge_v=edge_v, dropout=dropout, seed=seed)
    grads = iter(torch.autograd.grad(out, [t for t in leaves if t is not None], grad_out))
    return [out, stat, *(None if t is None else next(grads) for t in leaves)]


def make_inputs(csr, dtype, heads, dim, dim_v, with_bias, edge_vectors=False):
    """``(q, k, v, bias, edge_k, edge_v)`` and ``grad_out`` for ``csr`` (per-edge inputs in the user's order)."""
    n_dst, n_src, e = csr.num_dst_nodes, csr.num_src_nodes, csr.num_edges
    shapes = [(n_dst, heads, dim), (n_src, heads, dim), (n_src, heads, dim_v), (e, heads) if with_bias else None,
              (e, heads, dim) if edge_vectors else None, (e, heads, dim_v) if edge_vectors else None]
    inputs = [None if shape is None else torch.randn(shape).to(dtype) for shape in shapes]
    return inputs, torch.randn(n_dst, heads, dim_v).to(dtype)


def check(kind, normalizer, dtype, heads, dim, dim_v, with_bias, chunk=16, edge_vectors=False, dropout=0.0):
    """Triton (interpreted) against the float64 reference: out, stat and every gradient; with dropout
    both use the same seed, so the masks must agree."""
    csr = make_graph(kind)
    inputs, grad_out = make_inputs(csr, dtype, heads, dim, dim_v, with_bias, edge_vectors)
    seed = sk.dropout.new_seed("cpu") if dropout else None
    with interpreter_backend(), chunk_override(chunk):
        got = run_attention(csr, inputs, normalizer, grad_out, dropout, seed)
    assert hasattr(csr.rowptr, "_sparse_kernels_plans"), "the Triton path did not run"
    d = lambda t: None if t is None else t.double()  # noqa: E731
    with sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS):
        want = run_attention(csr, [d(t) for t in inputs], normalizer, d(grad_out), dropout, seed)
    for name, g, w in zip(NAMES, got, want):
        if w is None:
            continue
        assert g.dtype == (torch.float32 if name == "stat" else dtype), name
        assert not torch.isnan(g).any(), name
        assert rel_err(g, w) <= TOL[dtype], f"{name}: {rel_err(g, w)}"
    return csr, seed, got


@pytest.mark.parametrize("kind", ["random", "hub", "single", "empty"])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_fp32_matches_reference(kind, normalizer):
    csr, _, (out, stat, *_) = check(kind, normalizer, torch.float32, heads=3, dim=16, dim_v=12, with_bias=True)
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


@pytest.mark.parametrize("kind", ["hub", "sorted"])
def test_unsplit_plan_matches_split_plan(kind):
    """The split-K combine and the single-pass path agree (both against the reference)."""
    check(kind, "softmax", torch.float32, heads=1, dim=16, dim_v=16, with_bias=True, chunk=1024, edge_vectors=True,
          dropout=0.5)


# --------------------------------------------------------------------------- edge vectors and dropout
@pytest.mark.parametrize("kind", ["random", "hub", "sorted", "single", "empty"])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_edge_vectors_fp32_match_reference(kind, normalizer):
    """edge_k, edge_v and the bias read at the user's edge ids (shuffled, or the identity for "sorted")."""
    check(kind, normalizer, torch.float32, heads=3, dim=16, dim_v=12, with_bias=True, edge_vectors=True)


@pytest.mark.parametrize("kind,normalizer,dropout", [("random", "softmax", 0.0), ("sorted", "softplus", 0.0),
                                                     ("hub", "sigmoid", 0.5)])
def test_edge_vectors_fp16_match_reference(kind, normalizer, dropout):
    check(kind, normalizer, torch.float16, heads=2, dim=48, dim_v=64, with_bias=True, edge_vectors=True,
          dropout=dropout)


@pytest.mark.parametrize("kind", ["hub", "sorted"])
@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_matches_reference(kind, normalizer, p):
    """Same seed, same masks: the output and every gradient equal the reference's; ``dedge_v`` is
    zero exactly where the mask of :mod:`sparse_kernels.dropout` drops a (user edge, head)."""
    csr, seed, got = check(kind, normalizer, torch.float32, heads=2, dim=8, dim_v=8, with_bias=True,
                           edge_vectors=True, dropout=p)
    keep = sk.dropout.keep_mask(torch.arange(csr.num_edges), 2, seed, sk.dropout.threshold(p))
    assert 0 < keep.sum() < keep.numel()
    assert torch.equal(got[NAMES.index("dedge_v")].abs().sum(-1) != 0, keep)


# --------------------------------------------------------------------------- gat and gatv2 scores
SCORE_NAMES = ["out", "stat", "dq", "dk", "dv", "dbias", "dedge_k", "dedge_v", "datt"]


def run_scores(csr, inputs, score, normalizer, grad_out, dropout=0.0, seed=None, shared_edge=False):
    """out, stat and the gradients of ``inputs = (q, k, v, bias, edge_k, edge_v, att)`` (``None`` for absent
    ones and their gradients) with the score ``score``; ``shared_edge``: ``edge_k`` also serves as ``edge_v``."""
    leaves = [None if t is None else t.detach().requires_grad_() for t in inputs]
    q, k, v, bias, edge_k, edge_v, att = leaves
    out, stat = sk.attention_with_stats(q, k, v, csr, bias=bias, normalizer=normalizer, edge_k=edge_k,
                                        edge_v=edge_k if shared_edge else edge_v, dropout=dropout, seed=seed,
                                        score=score, negative_slope=0.15, att=att)
    grads = iter(torch.autograd.grad(out, [t for t in leaves if t is not None], grad_out))
    return [out, stat, *(None if t is None else next(grads) for t in leaves)]


def check_scores(kind, score, normalizer, dtype, heads, dim, with_bias, edge_k, edge_v, dropout=0.0, chunk=16,
                 shared_edge=False):
    """The gat (``q``, ``k`` ``[N, H, 1]``, values ``dim`` wide) or gatv2 (everything ``dim`` wide) score through the
    Triton kernels (interpreted) against the float64 reference: out, stat and every gradient, with the same
    dropout masks."""
    csr = make_graph(kind)
    n_dst, n_src, e = csr.num_dst_nodes, csr.num_src_nodes, csr.num_edges
    width = 1 if score == "gat" else dim
    shapes = [(n_dst, heads, width), (n_src, heads, width), (n_src, heads, dim), (e, heads) if with_bias else None,
              (e, heads, dim) if edge_k else None, (e, heads, dim) if edge_v and not shared_edge else None,
              (heads, dim) if score == "gatv2" else None]
    inputs = [None if shape is None else torch.randn(shape).to(dtype) for shape in shapes]
    grad_out = torch.randn(n_dst, heads, dim).to(dtype)
    seed = sk.dropout.new_seed("cpu") if dropout else None
    with interpreter_backend(), chunk_override(chunk):
        features = sk.dispatch.Features(dtype, score=score)
        assert sk.dispatch.select_kernels("attention_bwd", "cpu", features).name == "triton"
        got = run_scores(csr, inputs, score, normalizer, grad_out, dropout, seed, shared_edge)
    assert hasattr(csr.rowptr, "_sparse_kernels_plans"), "the Triton path did not run"
    d = lambda t: None if t is None else t.double()  # noqa: E731
    with sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS):
        want = run_scores(csr, [d(t) for t in inputs], score, normalizer, d(grad_out), dropout, seed, shared_edge)
    for name, g, w in zip(SCORE_NAMES, got, want):
        if w is None:
            continue
        assert g.dtype == (torch.float32 if name == "stat" else dtype), name
        assert not torch.isnan(g).any(), name
        assert rel_err(g, w) <= TOL[dtype], f"{name}: {rel_err(g, w)}"
    empty_rows = csr.degree() == 0
    assert (got[0][empty_rows] == 0).all()
    return csr, seed, got


SCORE_CASES = [  # kind, score, normalizer, heads, dim, bias, edge_k, edge_v, dropout
    ("random", "gat", "softmax", 3, 5, True, False, True, 0.0),
    ("hub", "gat", "sigmoid", 1, 8, True, False, False, 0.3),
    ("sorted", "gat", "softplus", 3, 16, False, False, True, 0.0),
    ("hub", "gat", "softmax", 1, 16, True, False, True, 0.5),
    ("single", "gat", "softplus", 3, 5, True, False, False, 0.0),
    ("empty", "gat", "softmax", 1, 8, True, False, True, 0.0),
    ("random", "gatv2", "softmax", 3, 5, True, True, True, 0.0),
    ("hub", "gatv2", "sigmoid", 1, 8, False, True, False, 0.0),
    ("sorted", "gatv2", "softplus", 3, 16, True, False, True, 0.3),
    ("hub", "gatv2", "softmax", 3, 8, True, True, True, 0.5),
    ("sorted", "gatv2", "sigmoid", 1, 5, True, True, True, 0.0),
    ("empty", "gatv2", "softplus", 3, 5, True, True, True, 0.0),
]


@pytest.mark.parametrize("case", SCORE_CASES, ids=lambda c: "-".join(map(str, c)))
def test_scores_fp32_match_reference(case):
    """gat and gatv2: every normaliser, bias, edge vectors, dropout, empty rows, N = 1, E = 0, split rows in both
    passes ("hub", "sorted"), N not a multiple of the block, H = 1 and 3, D = 1 (gat), 5, 8 and 16."""
    kind, score, normalizer, heads, dim, with_bias, edge_k, edge_v, p = case
    csr, seed, got = check_scores(kind, score, normalizer, torch.float32, heads, dim, with_bias, edge_k, edge_v, p)
    if p and edge_v:        # the masks are the reference's: dedge_v is zero exactly where a weight is dropped
        keep = sk.dropout.keep_mask(torch.arange(csr.num_edges), heads, seed, sk.dropout.threshold(p))
        assert 0 < keep.sum() < keep.numel()
        assert torch.equal(got[SCORE_NAMES.index("dedge_v")].abs().sum(-1) != 0, keep)


@pytest.mark.parametrize("kind,score,normalizer,dropout", [("hub", "gat", "softmax", 0.0),
                                                           ("random", "gatv2", "softplus", 0.0),
                                                           ("sorted", "gatv2", "softmax", 0.3)])
def test_scores_fp16_match_reference(kind, score, normalizer, dropout):
    check_scores(kind, score, normalizer, torch.float16, 3, 16, True, score == "gatv2", True, dropout)


@pytest.mark.parametrize("score", ["gat", "gatv2"])
def test_scores_unsplit_plan_matches_reference(score):
    """The same long rows with one work item each (no split-K combine)."""
    check_scores("hub", score, "softmax", torch.float32, 3, 8, True, score == "gatv2", True, 0.3, chunk=1024)


def test_gatv2_one_tensor_as_edge_k_and_edge_v():
    """edge_k serving as edge_v (FOLD_EDGE): one gradient holding both terms, as the reference's."""
    check_scores("hub", "gatv2", "softmax", torch.float32, 3, 8, True, True, True, 0.2, shared_edge=True)


def test_gatv2_gradients_are_bitwise_deterministic():
    """att's gradient is summed over the work items in a fixed order: two runs agree bit for bit."""
    csr = make_graph("hub")
    inputs = [torch.randn(30, 3, 8), torch.randn(30, 3, 8), torch.randn(30, 3, 8), torch.randn(csr.num_edges, 3),
              torch.randn(csr.num_edges, 3, 8), torch.randn(csr.num_edges, 3, 8), torch.randn(3, 8)]
    grad_out, seed = torch.randn(30, 3, 8), sk.dropout.new_seed("cpu")
    with interpreter_backend(), chunk_override(16):
        first = run_scores(csr, inputs, "gatv2", "softmax", grad_out, 0.3, seed)
        second = run_scores(csr, inputs, "gatv2", "softmax", grad_out, 0.3, seed)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rows,group", [(1, 4), (4, 4), (37, 4), (37, 256)])
def test_sum_rows_is_the_sum_in_a_fixed_order(rows, group):
    """The fixed-order row sum of gatv2's att gradient: one or several levels of the combine tree."""
    parts = torch.randn(rows, 3, 5)
    out = torch.empty(3, 5)
    sum_rows(parts, out, group)
    assert rel_err(out, parts.double().sum(0)) <= 1e-6
    again = torch.empty(3, 5)
    sum_rows(parts, again, group)
    assert torch.equal(out, again)


@triton.jit
def _keep_kernel(edge_ptr, seed_ptr, out_ptr, E, H, threshold, BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr):
    offs_e = tl.arange(0, BLOCK_E)
    offs_h = tl.arange(0, BLOCK_H)
    mask_e = offs_e < E
    counter = edge_offsets(tl.load(edge_ptr + offs_e, mask=mask_e, other=0), offs_h, H)  # as in the kernels
    key0, key1 = dropout_keys(seed_ptr)
    tl.store(out_ptr + offs_e[:, None] * H + offs_h[None, :], dropout_factor(counter, key0, key1, threshold, 2.0),
             mask=mask_e[:, None] & (offs_h < H)[None, :])


@pytest.mark.parametrize("seed", [0, 12345, (1 << 32) + 7, (1 << 62) - 1])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_hash_is_bit_identical(seed, p):
    """The Triton hash keeps exactly the (edge, head) pairs of :func:`sparse_kernels.dropout.keep_mask`,
    for seeds with high bits and counters ``edge * H + h`` beyond 2^32 (64-bit, the high half folded into
    the key)."""
    edge = torch.cat([torch.arange(200), torch.tensor([2 ** 31 - 1, 2 ** 31 + 5, 2 ** 32 - 1, 2 ** 40 + 3])])
    seed_t, heads, t = torch.tensor([seed]), 3, sk.dropout.threshold(p)
    factor = torch.empty(edge.numel(), heads)
    _keep_kernel[(1,)](edge, seed_t, factor, edge.numel(), heads, t, BLOCK_E=256, BLOCK_H=4)
    keep = sk.dropout.keep_mask(edge, heads, seed_t, t)
    assert torch.equal(factor != 0, keep) and (factor[keep] == 2.0).all()


def test_gradients_are_bitwise_deterministic():
    csr = make_graph("hub")
    inputs, grad_out = make_inputs(csr, torch.float32, 2, 16, 16, with_bias=True, edge_vectors=True)
    seed = sk.dropout.new_seed("cpu")
    with interpreter_backend(), chunk_override(16):
        first = run_attention(csr, inputs, "softmax", grad_out, 0.3, seed)
        second = run_attention(csr, inputs, "softmax", grad_out, 0.3, seed)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_rows_with_only_masked_scores_give_zeros_not_nan():
    csr = make_graph("hub")
    (q, k, v, _, edge_k, edge_v), grad_out = make_inputs(csr, torch.float32, 2, 16, 16, False, edge_vectors=True)
    bias = torch.zeros(csr.num_edges, 2)
    bias[csr.perm[csr.row == 4]] = float("-inf")  # the hub row: every score is -inf (user edge order)
    with interpreter_backend():
        got = run_attention(csr, (q, k, v, bias, edge_k, edge_v), "softmax", grad_out)
    out, stat = got[:2]
    assert (out[4] == 0).all() and torch.isinf(stat[4]).all()
    for g in [out, *got[2:]]:
        assert not torch.isnan(g).any()
    ref_out, ref_stat = reference.attention_forward(q, k, v, csr.row, csr.col, bias, 0.37, "softmax", eid=csr.perm,
                                                    edge_k=edge_k, edge_v=edge_v)
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


def test_prepared_graph_reads_nothing_back_from_the_device(monkeypatch):
    """Once a graph is prepared (what AttentionGraph does on CUDA), a forward and backward through the
    Triton kernels read no tensor value on the host: no .item(), .tolist() or int()/bool() of a tensor.
    On a GPU each of those is a synchronisation inside a layer."""
    import graphattn as ga
    from sparse_kernels.triton import prepare

    ei = torch.stack([torch.randint(0, 20, (90,)), torch.randint(0, 16, (90,))])
    graph = ga.AttentionGraph(ei, 20, 16)
    csr = sk.build_csr(ei, 20, 16)
    prepare(csr)
    q = torch.randn(16, 2, 8, requires_grad=True)
    k, v = torch.randn(20, 2, 8, requires_grad=True), torch.randn(20, 2, 8, requires_grad=True)
    edge_v = torch.randn(90, 2, 8, requires_grad=True)
    seed = torch.tensor([5])

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host")

    with interpreter_backend():
        ga.graph_attention(q, k, v, graph, edge_v=edge_v, dropout=0.3)          # warm: Triton compiles
        for name in ("item", "tolist", "__int__", "__bool__", "__float__", "__index__"):
            monkeypatch.setattr(torch.Tensor, name, host_read)
        out = sk.attention(q, k, v, csr, edge_v=edge_v, dropout=0.3, seed=seed)
        torch.autograd.grad(out.sum(), (q, k, v, edge_v))


def test_one_tensor_as_edge_k_and_edge_v_gets_one_summed_gradient():
    """TransformerConv's case: the row pass writes the two edge terms into one gradient (FOLD_EDGE)."""
    csr = make_graph("hub")
    q, k, v = (torch.randn(30, 2, 16) for _ in range(3))
    edge = torch.randn(csr.num_edges, 2, 16)
    grad_out = torch.randn(30, 2, 16)

    def grads(shared):
        leaves = [x.clone().requires_grad_() for x in (q, k, v, edge)]
        ek = leaves[3]
        ev = ek if shared else leaves[3].clone()      # the clone routes its gradient back to the same leaf
        out = sk.attention(*leaves[:3], csr, edge_k=ek, edge_v=ev, dropout=0.2, seed=torch.tensor([9]))
        return torch.autograd.grad(out, leaves, grad_out)

    with interpreter_backend(), chunk_override(16):
        folded = grads(shared=True)
    with sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS):
        separate = grads(shared=False)
    for a, b in zip(folded, separate):
        assert rel_err(a, b) <= 1e-5
