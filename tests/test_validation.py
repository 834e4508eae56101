"""Bad input raises a clear TypeError/ValueError naming the argument, before any computation."""
import pytest
import torch

import graphattn as ga
import sparse_kernels as sk

N, H, D = 6, 2, 4


@pytest.fixture
def inputs():
    ei = torch.tensor([[0, 1, 2, 3, 5], [1, 2, 3, 4, 0]])
    return torch.randn(N, H, D), torch.randn(N, H, D), torch.randn(N, H, 3), ei


@pytest.mark.parametrize("edge_index, error, match", [
    (torch.tensor([[0, 1], [1, 6]]), ValueError, r"edge_index\[1\].*6"),
    (torch.tensor([[0, 7], [1, 2]]), ValueError, r"edge_index\[0\].*7"),
    (torch.tensor([[0, -1], [1, 2]]), ValueError, "negative"),
    (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), TypeError, "integer dtype"),
    (torch.tensor([0, 1, 2]), ValueError, r"shape \[2, E\]"),
    (torch.tensor([[0, 1], [1, 2], [2, 3]]), ValueError, r"shape \[2, E\]"),
    ([[0, 1], [1, 2]], TypeError, "(torch.Tensor|edge_index tensor)"),
])
def test_bad_edge_index(inputs, edge_index, error, match):
    q, k, v, _ = inputs
    with pytest.raises(error, match=match):
        ga.graph_attention(q, k, v, edge_index)
    if isinstance(edge_index, torch.Tensor):
        with pytest.raises(error, match=match):
            ga.AttentionGraph(edge_index, N)


def test_shape_mismatches(inputs):
    q, k, v, ei = inputs
    with pytest.raises(ValueError, match="heads"):
        ga.graph_attention(q, k[:, :1], v[:, :1], ei)
    with pytest.raises(ValueError, match="channels per head"):
        ga.graph_attention(q, k[..., :3], v, ei)
    with pytest.raises(ValueError, match="k and v"):
        ga.graph_attention(q, k, v[:5], ei)
    with pytest.raises(ValueError, match="q must"):
        ga.graph_attention(q[0], k, v, ei)
    with pytest.raises(ValueError, match="destination nodes"):
        ga.graph_attention(q, k, v, ga.AttentionGraph(ei, N, N + 1))


def test_bias_checks(inputs):
    q, k, v, ei = inputs
    with pytest.raises(ValueError, match="bias"):
        ga.graph_attention(q, k, v, ei, bias=torch.randn(4, H))
    with pytest.raises(ValueError, match="bias"):
        ga.graph_attention(q, k, v, ei, bias=torch.randn(5))
    with pytest.raises(TypeError, match="bias"):
        ga.graph_attention(q, k, v, ei, bias=torch.ones(5, H, dtype=torch.long))


def test_dtype_and_normalizer(inputs):
    q, k, v, ei = inputs
    with pytest.raises(TypeError, match="share a dtype"):
        ga.graph_attention(q.double(), k, v, ei)
    with pytest.raises(TypeError, match="floating-point"):
        ga.graph_attention(q.long(), k.long(), v.long(), ei)
    with pytest.raises(ValueError, match="normalizer"):
        ga.graph_attention(q, k, v, ei, normalizer="relu")


def test_device_mismatch_reported(inputs):
    q, k, v, ei = inputs
    meta_v = v.to("meta")
    with pytest.raises(ValueError, match="device"):
        ga.graph_attention(q, k, meta_v, ei)


def test_errors_precede_computation(inputs, monkeypatch):
    q, k, v, ei = inputs
    calls = []
    monkeypatch.setattr(sk.reference, "attention_forward", lambda *a, **kw: calls.append(1))
    with pytest.raises(ValueError):
        ga.graph_attention(q, k, v, ei, normalizer="nope")
    assert not calls


def test_unfused_ops_validate():
    csr = sk.build_csr(torch.tensor([[0, 1], [1, 0]]), 2, 2)
    with pytest.raises(ValueError, match="weight"):
        sk.spmm(torch.ones(3, 1), torch.ones(2, 1, 2), csr)
    with pytest.raises(ValueError, match="rows"):
        sk.sddmm(torch.ones(3, 1, 2), torch.ones(2, 1, 2), csr)
    with pytest.raises(ValueError, match="normalizer"):
        sk.edge_softmax(torch.ones(2, 1), csr, "max")


@pytest.mark.parametrize("make, error, match", [
    (lambda ei: ga.AttentionGraph(ei, 5.7), TypeError, "num_src_nodes must be an integer"),
    (lambda ei: ga.AttentionGraph(ei, True), TypeError, "num_src_nodes must be an integer"),
    (lambda ei: ga.AttentionGraph(ei, 6, 2 ** 40), ValueError, r"num_dst_nodes must be in \[0, 2147483647\]"),
    (lambda ei: ga.AttentionGraph(ei, -3), ValueError, "num_src_nodes must be in"),
])
def test_node_counts_are_integers_in_range_before_any_allocation(inputs, make, error, match):
    with pytest.raises(error, match=match):
        make(inputs[3])


def test_edge_counts_beyond_the_kernels_limit_are_refused_before_any_allocation(inputs, monkeypatch):
    """One guard, at CSR construction, for every kernel: at most MAX_EDGES = 2^31 - 2^16 edges (edge
    positions are 32-bit in the kernels, and the widest edge tile must not wrap past 2^31). The
    oversized graphs are zero-stride views: nothing of their size is allocated."""
    from sparse_kernels.csr import MAX_EDGES, block_diagonal_full, edge_count
    from sparse_kernels.triton.schedule import edge_tile, launch_config

    q, k, v, _ = inputs
    big = torch.zeros(2, 1, dtype=torch.long).expand(2, MAX_EDGES + 1)
    limit = rf"{MAX_EDGES + 1} edges, more than the {MAX_EDGES} \(MAX_EDGES = 2\^31 - 2\^16\)"
    for make in (lambda: ga.AttentionGraph(big, N), lambda: ga.graph_attention(q, k, v, big),
                 lambda: sk.build_csr(big, N, N), lambda: sk.build_csr(big, N, N, validate=False)):
        with pytest.raises(ValueError, match="edge_index has " + limit):
            make()
    with pytest.raises(ValueError, match="col has " + limit):
        sk.csr_from_sorted_rows(big[1], big[0], N, N)
    with pytest.raises(ValueError, match=r"sizes has 2147488281 edges"):   # 46341^2, before building them
        block_diagonal_full(torch.tensor([46341]))
    assert edge_count("edge_index", MAX_EDGES) == MAX_EDGES
    monkeypatch.setenv("TRITON_INTERPRET", "0")                            # the GPU's tile table
    widest = max(max(edge_tile(h)[0], launch_config(d, h, 1e9)["BLOCK_E"]) for h in (1, 3, 64) for d in (1, 64))
    assert MAX_EDGES + widest <= 2 ** 31


def test_numeric_arguments(inputs):
    q, k, v, ei = inputs
    graph = ga.AttentionGraph(ei, N)
    with pytest.raises(ValueError, match="at least one head and one channel"):
        ga.graph_attention(q[..., :0], k[..., :0], v, graph)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        ga.graph_attention(q, k, v, graph, scale=float("nan"))
    with pytest.raises(ValueError, match="scale must be a finite number"):
        ga.graph_attention(q, k, v, graph, scale=float("inf"))
    with pytest.raises(TypeError, match=r"bias must have the dtype of q \(torch.float32\)"):
        ga.graph_attention(q, k, v, graph, bias=torch.zeros(5, H, dtype=torch.float64))
    for bad in (float("inf"), float("nan")):
        bias = torch.zeros(5, H)
        bias[2, 1] = bad
        with pytest.raises(ValueError, match=r"bias contains NaN or \+inf"):
            ga.graph_attention(q, k, v, graph, bias=bias)
    masked = torch.zeros(5, H)
    masked[:, 0] = float("-inf")                         # -inf masks: every row of head 0 is empty
    out = ga.graph_attention(q, k, v, graph, bias=masked)
    assert (out[:, 0] == 0).all() and torch.isfinite(out).all()


def test_long_dense_patterns_are_refused_with_their_size():
    from graphattn import seq

    with pytest.raises(ValueError, match=r"Causal\(\) over 9,000 positions would build 40,504,500 edges"):
        seq.Causal().batch([4096, 1500, 9000])
    with pytest.raises(ValueError, match=r"Full\(\) over 5,000 positions would build 25,000,000 edges"):
        seq.full(5000)
    attn = seq.SeqGraphAttention(16, 2, seq.Causal())          # the model runs them through SDPA instead
    assert attn(torch.randn(13000, 16), [4096, 8904]).shape == (13000, 16)
