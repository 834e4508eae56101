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
