"""p-Laplacian message passing per edge against the paper's dense formula (float64)."""
import pytest
import torch

from graphattn.adapters import attention_graph, edge_diff_norm, p_laplacian_step
from graphattn.adapters.capture import AttentionCapture
from graphattn.adapters.p_adapter import PAdapter
from graphattn.graph import AttentionGraph
from helpers import masked_weights

EPS = 1e-8


def _dense_p_laplacian(f, A, p, mu, eps=EPS):
    """The paper's formula with dense pairwise differences: f [n, H, d], A [H, n, n]."""
    diff = f.permute(1, 0, 2)[:, :, None, :] - f.permute(1, 0, 2)[:, None, :, :]    # [H, n, n, d]
    norm = ((A + eps).sqrt().unsqueeze(-1) * diff + eps).norm(dim=-1)
    M = A * norm.pow(p - 2)
    c = 2 * mu / p
    alpha = 1 / (M.sum(-1) + c)                                                     # [H, n]
    out = alpha.unsqueeze(-1) * (M @ f.permute(1, 0, 2)) + (alpha * c).unsqueeze(-1) * f.permute(1, 0, 2)
    return out.permute(1, 0, 2)


def _random_graph(n, heads, density=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    present = torch.rand(n, n, generator=gen) < density
    present[3] = False                                       # node 3 receives nothing
    dst, src = present.nonzero(as_tuple=True)
    shuffle = torch.randperm(dst.numel(), generator=gen)      # not sorted by destination: order bugs show
    dst, src = dst[shuffle], src[shuffle]
    weight = torch.rand(dst.numel(), heads, generator=gen, dtype=torch.float64)
    weight[::4, 0] = 0.0                                     # some zero weights in one head
    graph = AttentionGraph(torch.stack([src, dst]), n, edge_weight=weight)
    A = torch.zeros(heads, n, n, dtype=torch.float64)
    A[:, dst, src] = weight.T
    return graph, A


@pytest.mark.parametrize("p", [1.25, 1.5, 2.0, 3.0])
def test_per_edge_equals_dense_formula(p):
    f = torch.randn(11, 3, 5, dtype=torch.float64)
    graph, A = _random_graph(11, 3)
    out = p_laplacian_step(f, graph, p, 0.2)                    # edge_weight in the graph's (shuffled) order
    torch.testing.assert_close(out, _dense_p_laplacian(f, A, p, 0.2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[3], f[3])                   # isolated node keeps its features


@pytest.mark.parametrize("p", [1.25, 1.5, 2.0, 3.0])
def test_gradients_equal_dense_formula(p):
    f = torch.randn(9, 2, 4, dtype=torch.float64, requires_grad=True)
    graph, A = _random_graph(9, 2, seed=1)
    w = graph.edge_weight.clone().requires_grad_(True)
    p_t = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    mu_t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(9, 2, 4, dtype=torch.float64)
    weighted = graph.with_edge_weight(w)
    grads = torch.autograd.grad((p_laplacian_step(f, weighted, p_t, mu_t) * probe).sum(), (f, w, p_t, mu_t))
    A_leaf = A.clone().requires_grad_(True)
    ref = torch.autograd.grad((_dense_p_laplacian(f, A_leaf, p_t, mu_t) * probe).sum(), (f, A_leaf, p_t, mu_t))
    src, dst = graph.edge_index
    dense_dw = ref[1][:, dst, src].T
    for got, want in zip(grads, (ref[0], dense_dw, ref[2], ref[3])):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_edge_norm_gradcheck():
    f = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    graph, _ = _random_graph(5, 2, density=0.7, seed=2)
    w = (graph.to_csr_order(graph.edge_weight) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f_, w_: edge_diff_norm(f_, w_, graph, 1e-3), (f, w))


@pytest.mark.parametrize("p", [1.25, 1.5])
def test_no_nan_when_features_coincide(p):
    f = torch.randn(6, 2, 4)
    f[1] = f[0]
    f[4] = f[0]
    f.requires_grad_(True)
    graph, _ = _random_graph(6, 2, density=1.0, seed=3)          # includes self-loops i -> i
    graph.edge_weight = graph.to_csr_order(graph.edge_weight).float()
    p_t = torch.tensor(p, requires_grad=True)
    out = p_laplacian_step(f, graph, p_t, 0.1)
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(f.grad).all() and torch.isfinite(p_t.grad)


def test_p_laplacian_bad_input():
    graph, _ = _random_graph(4, 2)
    with pytest.raises(ValueError, match="f must"):
        p_laplacian_step(torch.randn(4, 2), graph, 1.5, 0.1)
    with pytest.raises(ValueError, match="edge_weight"):
        p_laplacian_step(torch.randn(4, 2, 3), AttentionGraph(graph.edge_index, 4), 1.5, 0.1)
    with pytest.raises(ValueError, match="channels"):
        p_laplacian_step(torch.randn(4, 3, 3), graph, 1.5, 0.1)
    with pytest.raises(ValueError, match="bottleneck"):
        PAdapter(16, 4, 6)


def test_p_adapter_module_equals_dense_pipeline():
    torch.manual_seed(1)
    B, H, L, dh, hidden = 2, 2, 5, 4, 8
    q, k, v = (torch.randn(B, H, L, dh, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(B, 1, L, L, dtype=torch.bool)
    mask[1, ..., 3:] = False
    w_o = torch.nn.Linear(H * dh, hidden).double()
    adapter = PAdapter(hidden, H, 4, p_init=1.5).double()
    torch.nn.init.normal_(adapter.up.weight)
    output = torch.randn(B, L, hidden, dtype=torch.float64)
    capture = AttentionCapture(q, k, v, mask, 0.5, False, None)
    got = adapter(capture, w_o, output)
    # dense: probabilities, W_down W_o v split into heads, formula, gate, up
    graph = attention_graph(q, k, mask, scaling=0.5)
    A_full = masked_weights(q @ k.transpose(-1, -2) * 0.5, mask)
    valid = mask[:, 0].diagonal(dim1=1, dim2=2)
    A_full = A_full * (valid[:, None, :, None] & valid[:, None, None, :])
    f = adapter.down(w_o(v.transpose(1, 2).reshape(B, L, -1))).reshape(B, L, H, -1)
    fp = torch.stack([_dense_p_laplacian(f[b], A_full[b], adapter.p, adapter.mu, adapter.eps) for b in range(B)])
    want = adapter.up(torch.nn.functional.gelu(adapter.gate(output)) * fp.reshape(B, L, -1))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert graph.num_edges == 25 + 9
