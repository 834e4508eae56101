"""The dense-block path (block-diagonal full attention as batched dense attention over size buckets)
equals the sparse CSR path: outputs, gradients and dropout masks, on mixed-size batches."""
import pytest
import torch

import graphattn as ga
import sparse_kernels as sk
from graphattn.functional import explain
from sparse_kernels import dense_blocks
from sparse_kernels.csr import block_diagonal_full

DT = torch.float64
SIZES = [3, 7, 0, 5, 7, 1, 12, 2, 9, 9]          # empty and single-node graphs included


def _batch(sizes=SIZES):
    sizes = torch.tensor(sizes)
    return torch.repeat_interleave(torch.arange(len(sizes)), sizes), len(sizes)


@pytest.fixture(params=["one bucket", "several buckets"])
def bucket_cost(request, monkeypatch):
    monkeypatch.setattr(dense_blocks, "BUCKET_COST", 10 ** 9 if request.param == "one bucket" else 1)
    return request.param


def _full_csr(batch):
    """The engine's block-diagonal full graph of a batch vector (what ``full_per_graph`` builds)."""
    return block_diagonal_full(torch.bincount(batch))


def _run(path, csr, leaves, grad_out, **options):
    with sk.force_path(path):
        out = sk.attention(*leaves, csr, **options)
    return [out, *torch.autograd.grad(out, leaves, grad_out)]


@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("factors", ["compiled", "pytorch"])
def test_dense_blocks_equal_sparse_path(bucket_cost, dropout, factors, monkeypatch):
    if factors == "pytorch":        # the dense path's dropout factors from the PyTorch hash, not the C kernels
        monkeypatch.setattr(sk.cpu, "available", lambda: False)
    batch, num_graphs = _batch()
    csr = _full_csr(batch)
    plan = dense_blocks.build_plan(csr)
    assert (len(plan.buckets) == 1) == (bucket_cost == "one bucket")
    n = batch.numel()
    leaves = [torch.randn(n, 3, 4, dtype=DT, requires_grad=True) for _ in range(2)] + \
             [torch.randn(n, 3, 6, dtype=DT, requires_grad=True)]
    grad_out = torch.randn(n, 3, 6, dtype=DT)
    options = dict(dropout=dropout, seed=torch.tensor([31337]), scale=0.7)
    dense = _run("dense_blocks", csr, leaves, grad_out, **options)
    sparse = _run("csr", csr, leaves, grad_out, **options)
    for name, a, b in zip(["out", "dq", "dk", "dv"], dense, sparse):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=lambda m: f"{name}: {m}")


def test_dense_equals_per_graph_sdpa_in_float32():
    batch, num_graphs = _batch([15, 40, 22, 31, 15, 28])
    graph = ga.AttentionGraph.full_per_graph(batch, num_graphs)
    q, k, v = (torch.randn(batch.numel(), 4, 16) for _ in range(3))
    out = ga.graph_attention(q, k, v, graph)
    start = 0
    for size in torch.bincount(batch).tolist():
        part = slice(start, start + size)
        ref = torch.nn.functional.scaled_dot_product_attention(*(x[part].transpose(0, 1) for x in (q, k, v)))
        torch.testing.assert_close(out[part], ref.transpose(0, 1), atol=1e-5, rtol=1e-5)
        start += size


def test_dispatcher_picks_dense_blocks_only_where_they_apply():
    batch, num_graphs = _batch()
    graph = ga.AttentionGraph.full_per_graph(batch, num_graphs)
    x = torch.randn(batch.numel(), 2, 4)
    assert explain(x, x, x, graph) == {"path": "dense_blocks"}
    assert explain(x, x, x, graph, dropout=0.5) == {"path": "dense_blocks"}
    bias = torch.zeros(graph.num_edges, 2)
    assert explain(x, x, x, graph, bias=bias)["path"] == "csr"                # per-edge inputs: CSR kernels
    assert explain(x, x, x, graph, normalizer="sigmoid")["path"] == "csr"
    same_edges = ga.AttentionGraph(graph.edge_index, graph.num_src_nodes)     # not marked block-diagonal
    assert explain(x, x, x, same_edges)["path"] == "csr"


def test_plan_is_built_once_per_graph_and_buckets_minimise_padding():
    batch, num_graphs = _batch([4] * 20 + [30] * 2)
    csr = _full_csr(batch)
    plan = dense_blocks.plan_for(csr)
    assert dense_blocks.plan_for(csr) is plan
    assert [(b.size, b.num_blocks) for b in plan.buckets] == [(4, 20), (30, 2)]   # not 22 blocks of 30


def test_jagged_layout_equals_padded(monkeypatch):
    """The variable-length path (CUDA's choice without dropout) on the CPU: same result."""
    batch, num_graphs = _batch([3, 7, 5, 1])
    csr = _full_csr(batch)
    leaves = [torch.randn(batch.numel(), 2, 4, requires_grad=True) for _ in range(3)]
    call = sk.dispatch.AttentionCall(*leaves, csr, None, None, None, 0.5, "softmax", 0.0, None)
    plan = dense_blocks.plan_for(csr)
    jagged = dense_blocks._jagged_attention(call, plan)
    padded = dense_blocks._padded_attention(call, plan)
    torch.testing.assert_close(jagged, padded, atol=1e-6, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(jagged.sum(), leaves), torch.autograd.grad(padded.sum(), leaves)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_gps_layer_trains_through_dense_blocks_with_dropout():
    from torch_geometric.nn import GINEConv

    batch, num_graphs = _batch([6, 9, 4])
    n = batch.numel()
    edge_index = torch.stack([torch.arange(n), torch.arange(n).roll(1)])
    layer = ga.GPSLayer(8, GINEConv(torch.nn.Linear(8, 8), edge_dim=8), heads=2, attn_kwargs={"dropout": 0.5})
    x, e = torch.randn(n, 8, requires_grad=True), torch.randn(n, 8)
    layer(x, edge_index, batch, num_graphs=num_graphs, edge_attr=e).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.attn.parameters())
