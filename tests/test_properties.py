"""Property-based tests: ``graph_attention`` against an independent extended-precision oracle.

Hypothesis draws random graphs (duplicate edges, bipartite shapes, destinations without edges, a hub
holding most edges), head counts and widths, every normaliser, biases (ordinary, +-1e4, and the bands
where softplus underflows: [-103.75, -88.75] in float32, [-745, -710] in float64), scales and both float
dtypes. The oracle loops over destination rows in NumPy ``longdouble`` (80-bit on x86: no underflow
down to exp(-11000)) with the gradients derived by hand, so it shares no code with the engine. Outputs
and the gradients of q, k, v and the bias must agree on every CPU kernel set."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import graphattn as ga
import sparse_kernels as sk

LD = np.longdouble
BANDS = {torch.float32: (-103.75, -88.75), torch.float64: (-745.0, -710.0)}
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n_dst = draw(st.integers(1, 9))
    n_src = draw(st.integers(1, 9)) if draw(st.booleans()) else n_dst
    num_edges = draw(st.integers(0, 40))
    hub = draw(st.booleans())
    src = draw(st.lists(st.integers(0, n_src - 1), min_size=num_edges, max_size=num_edges))
    dst = draw(st.lists(st.integers(0, n_dst - 1), min_size=num_edges, max_size=num_edges))
    if hub:                                    # destination 0 receives most edges
        dst = [0 if i % 4 else d for i, d in enumerate(dst)]
    heads, dim, dim_v = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    normalizer = draw(st.sampled_from(["softmax", "sigmoid", "softplus"]))
    bias_kind = draw(st.sampled_from(["none", "normal", "huge", "underflow"]))
    scale = draw(st.one_of(st.none(), st.floats(0.05, 3.0)))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    edge_index = torch.tensor([src, dst], dtype=torch.long).view(2, -1)
    return dict(dtype=dtype, n_src=n_src, n_dst=n_dst, edge_index=edge_index, heads=heads, dim=dim, dim_v=dim_v,
                normalizer=normalizer, bias_kind=bias_kind, scale=scale, seed=seed)


def _tensors(p):
    gen = torch.Generator().manual_seed(p["seed"])
    dt, h = p["dtype"], p["heads"]
    e = p["edge_index"].size(1)
    q = torch.randn(p["n_dst"], h, p["dim"], generator=gen, dtype=torch.float64)
    k = torch.randn(p["n_src"], h, p["dim"], generator=gen, dtype=torch.float64)
    v = torch.randn(p["n_src"], h, p["dim_v"], generator=gen, dtype=torch.float64)
    grad = torch.randn(p["n_dst"], h, p["dim_v"], generator=gen, dtype=torch.float64)
    bias = None
    if p["bias_kind"] == "normal":
        bias = torch.randn(e, h, generator=gen, dtype=torch.float64)
    elif p["bias_kind"] == "huge":
        bias = torch.randint(0, 2, (e, h), generator=gen).double() * 2e4 - 1e4
    elif p["bias_kind"] == "underflow":
        lo, hi = BANDS[dt]
        bias = lo + (hi - lo) * torch.rand(e, h, generator=gen, dtype=torch.float64)
    return [None if t is None else t.to(dt) for t in (q, k, v, bias, grad)]


def oracle(p, q, k, v, bias, grad):
    """Row by row in longdouble: outputs and the hand-derived gradients of q, k, v, bias."""
    q, k, v, grad = (t.double().numpy().astype(LD) for t in (q, k, v, grad))
    b = None if bias is None else bias.double().numpy().astype(LD)
    scale = LD(1 / math.sqrt(q.shape[2]) if p["scale"] is None else p["scale"])
    src, dst = p["edge_index"].numpy()
    out = np.zeros((q.shape[0], q.shape[1], v.shape[2]), LD)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    db = np.zeros((len(src), q.shape[1]), LD)
    for i in range(q.shape[0]):
        edges = np.nonzero(dst == i)[0]
        if len(edges) == 0:
            continue
        j = src[edges]
        s = scale * np.einsum("hd,ehd->eh", q[i], k[j]) + (0 if b is None else b[edges])     # [deg, H]
        if p["normalizer"] == "softmax":
            w = np.exp(s - s.max(0))
            w = w / w.sum(0)
        elif p["normalizer"] == "sigmoid":
            w = 1 / (1 + np.exp(-s))
        else:
            sp = np.log1p(np.exp(s))
            w = sp / sp.sum(0)
        out[i] = np.einsum("eh,ehd->hd", w, v[j])
        da = np.einsum("hd,ehd->eh", grad[i], v[j])
        if p["normalizer"] == "softmax":
            ds = w * (da - (w * da).sum(0))
        elif p["normalizer"] == "sigmoid":
            ds = da * w * (1 - w)
        else:
            ds = (da - (w * da).sum(0)) / (1 + np.exp(-s)) / np.log1p(np.exp(s)).sum(0)
        db[edges] = ds
        dq[i] = scale * np.einsum("eh,ehd->hd", ds, k[j])
        np.add.at(dk, j, scale * ds[:, :, None] * q[i][None])
        np.add.at(dv, j, w[:, :, None] * grad[i][None])
    return out, dq, dk, dv, db


def _close(name, got, want, dtype, max_score):
    """Relative to the largest value, plus what rounding the scores themselves to ``dtype`` costs: a score
    of magnitude |s| carries an absolute error of about eps * |s| in any implementation of that dtype."""
    got = got.detach().double().numpy().astype(LD)
    err = np.abs(got - want).max() if want.size else LD(0)
    scale = max(LD(1), np.abs(want).max() if want.size else LD(1))
    tol = TOL[dtype] + 4 * torch.finfo(dtype).eps * max_score
    assert err <= tol * scale, f"{name}: max error {float(err):.3g} (scale {float(scale):.3g}, tolerance {tol:.3g})"


@pytest.fixture(params=["cpu", "reference"])
def kernels(request):
    if request.param == "cpu":
        if not sk.cpu.available():
            pytest.skip("compiled CPU kernels unavailable")
        yield
    else:
        with sk.dispatch.kernel_override("reference", "cpu", sk.ops.REFERENCE_KERNELS):
            yield


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=problems())
def test_graph_attention_matches_the_oracle(kernels, p):
    q, k, v, bias, grad = _tensors(p)
    graph = ga.AttentionGraph(p["edge_index"], p["n_src"], p["n_dst"])
    leaves = [t.clone().requires_grad_() for t in (q, k, v) + ((bias,) if bias is not None else ())]
    out = ga.graph_attention(*leaves[:3], graph, bias=leaves[3] if bias is not None else None, scale=p["scale"],
                             normalizer=p["normalizer"])
    grads = torch.autograd.grad(out, leaves, grad, allow_unused=True)
    want = oracle(p, q, k, v, bias, grad)
    max_score = 10.0 + (float(bias.abs().max()) if bias is not None and bias.numel() else 0.0)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads if g is not None)
    names = ["out", "dq", "dk", "dv", "dbias"]
    for name, g, w in zip(names, [out, *grads], want):
        _close(name, g, w, p["dtype"], max_score)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_single_edge_keeps_weight_one_in_the_underflow_band(kernels, dtype):
    """The issue's case: in the band a single in-edge gave inf (and NaN gradients), below it 0."""
    lo, hi = BANDS[dtype]
    scores = torch.tensor([lo - 50, lo, (lo + hi) / 2, hi, -1e4], dtype=dtype)
    n = scores.numel()
    q, k = torch.zeros(n, 1, 1, dtype=dtype), torch.zeros(n, 1, 1, dtype=dtype)
    v = torch.randn(n, 1, 3, dtype=dtype)
    bias = scores.view(-1, 1).clone().requires_grad_()
    graph = ga.AttentionGraph(torch.arange(n).repeat(2, 1), n)          # i -> i: one edge per row
    out = ga.graph_attention(q, k, v, graph, bias=bias, normalizer="softplus")
    torch.testing.assert_close(out, v)
    (g,) = torch.autograd.grad(out.sum(), bias)
    assert torch.isfinite(g).all() and (g.abs() < 1e-6).all()          # weight 1 whatever the score
