"""graphattn.sparsify: per-graph Gumbel top-k (straight-through), head/layer/weight pruning, and
export() equal to the masked model with the pruned parts removed from the computation."""
import math

import pytest
import torch
from torch_geometric.data import Batch

import sparse_kernels as sk
from graphattn.data import load_dataset
from graphattn.graph import AttentionGraph
from graphattn.models import GPS, model_inputs
from graphattn.nn.gps_layer import GPSLayer
from graphattn.nn.multihead_attention import MultiheadGraphAttention
from graphattn.sparsify import (GTSP, EdgeMask, GTSPConfig, HeadPruner, LayerPruner, SparseGPS, SparseLinear,
                                TokenMask, WeightPruner, cubic_sparsity, group_topk, group_topk_mask,
                                shrink_mlp, store_sparse)
from graphattn.bench.gtsp_export import export_benchmark, random_molecules
from graphattn.utils import count_flops
from helpers import dense_attention, shared_data

SIZES = (5, 1, 12, 7, 30, 2)                      # graphs of different sizes, one single node


def _batch(sizes=SIZES, dtype=torch.float64) -> Batch:
    batch = random_molecules(sizes, generator=torch.Generator().manual_seed(1))
    batch.x, batch.edge_attr = batch.x.to(dtype), batch.edge_attr.to(dtype)
    return batch


def _gps(**kw) -> GPS:
    return GPS(16, 2, num_layers=4, heads=4, node_encoder=8, edge_encoder=4, **kw).double()


# ------------------------------------------------------------------ per-graph top-k
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.7, 1.0])
def test_group_topk_keeps_ceil_ratio_per_group_without_padding(ratio):
    sizes = torch.tensor([3, 0, 1, 8, 5])
    group = torch.repeat_interleave(torch.arange(5), sizes)
    perm = torch.randperm(group.numel())                   # groups need not be contiguous
    group, scores = group[perm], torch.randn(group.numel())
    keep = group_topk(scores, group, 5, ratio)
    for g, n in enumerate(sizes.tolist()):
        members = (group == g).nonzero().view(-1)
        k = max(1, math.ceil(ratio * n)) if n else 0
        assert int(keep[members].sum()) == k
        top = members[scores[members].argsort(descending=True)[:k]]
        assert keep[top].all()


def test_group_topk_valid_candidates():
    group = torch.tensor([0, 0, 0, 0, 1, 1])
    valid = torch.tensor([True, False, True, True, False, False])
    keep = group_topk(torch.tensor([0.0, 9.0, 1.0, 2.0, 5.0, 6.0]), group, 2, 0.5, valid)
    assert keep.tolist() == [False, False, True, True, False, False]


def test_straight_through_mask_is_hard_and_passes_gradients():
    scores = torch.randn(12, dtype=torch.float64, requires_grad=True)
    group = torch.tensor([0] * 5 + [1] * 7)
    for training in (True, False):
        mask = group_topk_mask(scores, group, 2, 0.4, training=training)
        assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
        assert mask.detach().sum().item() == math.ceil(0.4 * 5) + math.ceil(0.4 * 7)
        weights = torch.randn(12, dtype=torch.float64)
        grad, = torch.autograd.grad((mask * weights).sum(), scores)
        assert torch.isfinite(grad).all() and (grad != 0).all()      # every score of the group
    eval_mask = group_topk_mask(scores, group, 2, 0.4, training=False)
    assert torch.equal(eval_mask.detach().bool(), group_topk(scores.detach(), group, 2, 0.4))


def test_token_and_edge_masks_keep_ratio_per_graph():
    batch = _batch()
    h = torch.randn(batch.num_nodes, 16)
    tokens = TokenMask(16, 0.3)
    keep = tokens.select(h, batch.batch, batch.num_graphs)
    counts = torch.bincount(batch.batch[keep], minlength=batch.num_graphs)
    assert counts.tolist() == [max(1, math.ceil(0.3 * n)) for n in SIZES]
    graph = AttentionGraph.full_per_graph(batch.batch)
    edges = EdgeMask(16, 0.3, rank=4)
    kept = edges.select(h, graph, batch.batch, batch.num_graphs)
    per_graph = torch.bincount(batch.batch[graph.edge_index[1][kept]], minlength=batch.num_graphs)
    assert per_graph.tolist() == [max(1, math.ceil(0.3 * n * n)) for n in SIZES]


def test_gtsp_masks_receive_gradients_through_the_model():
    batch = _batch()
    gtsp = GTSP(_gps(), GTSPConfig(token_ratio=0.5, edge_ratio=0.5, head_density=0.5, layer_keep=0.5)).double()
    gtsp.train()
    gtsp(**model_inputs(batch)).pow(2).sum().backward()
    for param in (gtsp.sparse.token_mask.score.weight, gtsp.sparse.edge_mask.score.query.weight,
                  gtsp.sparse.edge_mask.score.key.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert gtsp.sparse.live_head_mask.grad.abs().sum() > 0
    assert gtsp.sparse.live_layer_gate.grad.abs().sum() > 0


# ------------------------------------------------------------------ layer hooks
def test_masked_attention_equals_dense_reference_on_kept_edges():
    n, heads = 9, 3
    graph = AttentionGraph.full_per_graph(torch.tensor([0] * 4 + [1] * 5))
    attn = MultiheadGraphAttention(12, heads).double().eval()
    x = torch.randn(n, 12, dtype=torch.float64)
    mask = (torch.rand(graph.num_edges) < 0.5).double()
    mask[graph.edge_index[1] == 0] = 0.0                                  # a row with no kept edge
    out = attn(x, graph, edge_mask=mask)
    kept = graph.edge_index[:, mask.bool()]
    q, k, v = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(n, 3, heads, -1).unbind(1)
    ref = attn.out_proj(dense_attention(q, k, v, kept).reshape(n, -1))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(attn(x, graph, edge_mask=torch.ones(graph.num_edges, dtype=torch.float64)),
                               attn(x, graph), rtol=1e-10, atol=1e-10)


def test_masked_attention_gradients_stay_finite_when_dropped_edges_dominate():
    graph = AttentionGraph.full_per_graph(torch.zeros(2, dtype=torch.long))
    q = torch.tensor([[[10.0]], [[0.8]]], requires_grad=True)      # s_00 - s_01 = 92: e^-92 is subnormal
    k = q.detach().clone()
    src, dst = graph.edge_index
    mask = (src != dst).float().requires_grad_(True)                 # drop the dominant self-scores
    out = MultiheadGraphAttention._masked_attention(q, k, torch.randn(2, 1, 1), graph, mask, 0.0)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all() and torch.isfinite(mask.grad).all()


def test_prune_heads_equals_head_mask():
    attn = MultiheadGraphAttention(12, 4).double().eval()
    graph = AttentionGraph.full_per_graph(torch.tensor([0, 0, 0, 1, 1]))
    x = torch.randn(5, 12, dtype=torch.float64)
    ref = attn(x, graph, head_mask=torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    attn.prune_heads(torch.tensor([2, 0]))
    assert attn.num_heads == 2 and attn.in_proj_weight.shape == (18, 12) and attn.out_proj.in_features == 6
    torch.testing.assert_close(attn(x, graph), ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="keep"):
        attn.prune_heads(torch.tensor([5]))
    with pytest.raises(ValueError, match="head_mask"):
        attn(x, graph, head_mask=torch.ones(4))


def test_gps_layer_hooks_token_subset_and_removed_block():
    batch = _batch()
    layer = GPSLayer(8, None, heads=2, norm="layer_norm").double().eval()
    x = torch.randn(batch.num_nodes, 8, dtype=torch.float64)
    keep = torch.rand(batch.num_nodes) < 0.6
    nodes = keep.nonzero().view(-1)
    full = AttentionGraph.full_per_graph(batch.batch)
    src, dst = full.edge_index
    masked = layer(x, None, batch.batch, attn_graph=full, attn_edge_mask=(keep[src] & keep[dst]).double(),
                   attn_scale=keep.double())
    subset = layer(x, None, batch.batch, attn_nodes=nodes, num_graphs=batch.num_graphs)
    torch.testing.assert_close(subset, masked, rtol=1e-10, atol=1e-10)
    zero_gate = layer(x, None, batch.batch, attn_scale=0.0)
    layer.attn = None
    torch.testing.assert_close(layer(x, None, batch.batch), zero_gate, rtol=1e-10, atol=1e-10)


def test_gps_layer_hooks_need_multihead():
    layer = GPSLayer(8, None, heads=2, attn_type="linear")
    with pytest.raises(ValueError, match="multihead"):
        layer(torch.randn(3, 8), None, attn_scale=0.5)


# ------------------------------------------------------------------ schedules
def test_head_pruner_prunes_lowest_and_regrows_highest():
    mask = torch.zeros(2, 4)
    pruner = HeadPruner(0.5, update_frequency=2, death_rate=0.5, stop_epoch=5)
    pruner.init_mask(mask, torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [2.0, 2.0]
    mask.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]))
    importance = torch.tensor([[3.0, 1.0, 0.5, 2.0], [9.0, 5.0, 4.0, 1.0]])
    pruner.accumulate(importance)
    assert not pruner.step(0, mask)                        # not due yet
    pruner.accumulate(importance)
    assert pruner.step(0, mask)
    assert mask.tolist() == [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]]
    pruner.accumulate(importance)
    pruner.accumulate(importance)
    assert not pruner.step(5, mask)                        # past stop_epoch


def test_layer_pruner_removes_least_important_blocks_once():
    gate = torch.ones(4)
    pruner = LayerPruner(0.5, prune_epoch=2)
    pruner.accumulate(torch.tensor([0.3, -2.0, 0.1, 1.0]))
    assert not pruner.epoch_end(1, gate)
    assert pruner.epoch_end(2, gate) and gate.tolist() == [0.0, 1.0, 0.0, 1.0]   # |importance|
    assert not pruner.epoch_end(3, gate)


def test_cubic_schedule_and_global_magnitude_pruning():
    assert cubic_sparsity(0, 0, 4, 0.2) == 0.0
    assert cubic_sparsity(4, 0, 4, 0.2) == pytest.approx(0.8)
    assert cubic_sparsity(2, 0, 4, 0.2) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    a, b = torch.nn.Parameter(torch.randn(6, 5)), torch.nn.Parameter(torch.randn(3, 10) * 3)
    pruner = WeightPruner({"a": a, "b": b}, final_density=0.4, start_epoch=0, end_epoch=2)
    pruner.epoch_end(2)
    values = torch.cat([a.detach().flatten(), b.detach().flatten()])
    assert int((values != 0).sum()) == 24 and pruner.density == pytest.approx(0.4)
    threshold = values[values != 0].abs().min()
    original_pruned = ~torch.cat([m.flatten() for m in pruner.masks.values()])
    assert original_pruned.sum() == 36 and (values.abs() <= threshold).sum() >= 1
    with torch.no_grad():
        a.add_(1.0)                                           # an optimiser step moving pruned weights
    pruner.apply()
    assert int((torch.cat([a.detach().flatten(), b.detach().flatten()]) != 0).sum()) == 24


def test_weight_regrowth_keeps_density_and_follows_gradient():
    w = torch.nn.Parameter(torch.arange(1.0, 11.0).view(1, 10))
    pruner = WeightPruner({"w": w}, final_density=0.5, start_epoch=0, end_epoch=1, regrow=0.2)
    w.grad = torch.zeros_like(w)
    w.grad[0, 0] = 100.0                                      # the smallest weight has the largest gradient
    pruner.epoch_end(1)
    assert pruner.density == pytest.approx(0.5)
    assert bool(pruner.masks["w"][0, 0]) and not bool(pruner.masks["w"][0, 5])


def test_config_validation():
    with pytest.raises(ValueError, match="token_ratio"):
        GTSPConfig(token_ratio=0.0)
    with pytest.raises(ValueError, match="drop_path"):
        GTSPConfig(drop_path=1.0)
    with pytest.raises(ValueError, match="weight_end_epoch"):
        GTSPConfig(weight_start_epoch=3, weight_end_epoch=2)
    with pytest.raises(TypeError, match="GPS"):
        SparseGPS(torch.nn.Linear(2, 2), GTSPConfig())
    with pytest.raises(ValueError, match="multihead"):
        GTSP(GPS(8, 1, attn_type="performer", node_encoder=4, edge_encoder=None), GTSPConfig())


# ------------------------------------------------------------------ export
def test_shrink_mlp_and_sparse_linear_are_exact():
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Dropout(0.0),
                              torch.nn.Linear(8, 6)).double()
    with torch.no_grad():
        mlp[0].weight[[1, 4]] = 0.0                           # dead inputs: constant relu(b)
        mlp[0].bias[1] = 0.7
        mlp[3].weight[:, 6] = 0.0                             # dead output column
    x = torch.randn(5, 6, dtype=torch.float64)
    ref = mlp(x)
    assert shrink_mlp(mlp) and mlp[0].out_features == 5
    torch.testing.assert_close(mlp(x), ref, rtol=1e-12, atol=1e-12)
    linear = torch.nn.Linear(6, 4).double()
    with torch.no_grad():
        linear.weight[linear.weight.abs() < 0.3] = 0.0
    holder = torch.nn.Sequential(linear)
    ref = holder(x)
    assert store_sparse(holder, max_density=1.0) == 1 and isinstance(holder[0], SparseLinear)
    torch.testing.assert_close(holder(x), ref, rtol=1e-12, atol=1e-12)


def _train_few_steps(gtsp: GTSP, batch: Batch, epochs: int = 2, steps: int = 2) -> None:
    optimizer = torch.optim.Adam(gtsp.parameters(), lr=1e-2)
    gtsp.train()
    for _ in range(epochs):
        for _ in range(steps):
            optimizer.zero_grad()
            gtsp(**model_inputs(batch)).pow(2).mean().backward()
            optimizer.step()
            gtsp.step()
        gtsp.epoch_end()
    gtsp.eval()


@pytest.mark.parametrize("components", [
    {"edge_ratio": 0.5, "head_density": 0.5, "layer_keep": 0.5},
    {"token_ratio": 0.5, "edge_ratio": 0.5, "head_density": 0.5, "layer_keep": 0.5, "weight_density": 0.3},
    {"token_ratio": 0.3},
])
def test_export_equals_masked_model_and_removes_the_pruned_work(components):
    batch = _batch()
    dense_flops = count_flops(_gps(), batch)
    gtsp = GTSP(_gps(), GTSPConfig(epochs=2, head_update_frequency=1, **components)).double()
    _train_few_steps(gtsp, batch)
    masked = gtsp(**model_inputs(batch))
    small = gtsp.export()
    torch.testing.assert_close(small(**model_inputs(batch)), masked, rtol=1e-5, atol=1e-5)
    with sk.force_path("csr"):                                        # no dense-block padding in the count
        flops = count_flops(small, batch)
    layers = small.model.layers
    if "layer_keep" in components:
        assert sum(layer.attn is None for layer in layers) == 2
        assert all(layer.attn.num_heads == 2 for layer in layers if layer.attn is not None)
        attention = lambda f: f.attention + f.attention_proj          # noqa: E731
        assert flops.attention <= 0.55 * 0.25 * dense_flops.attention
        assert attention(flops) <= 0.55 * attention(dense_flops)       # at least 45% fewer
    if "token_ratio" in components and "edge_ratio" not in components:
        kept = sum(max(1, math.ceil(0.3 * n)) ** 2 for n in SIZES)
        assert flops.attention == 4 * kept * 4 * (4 * 4 + 5)             # L H (4d + 5) per kept edge
    assert flops.total < dense_flops.total


def test_export_of_a_float32_model_matches_to_1e5():
    batch = _batch(dtype=torch.float32)
    gtsp = GTSP(GPS(16, 2, num_layers=4, heads=4, node_encoder=8, edge_encoder=4),
                GTSPConfig(token_ratio=0.5, edge_ratio=0.5, head_density=0.5, layer_keep=0.5, epochs=2))
    _train_few_steps(gtsp, batch)
    torch.testing.assert_close(gtsp.export()(**model_inputs(batch)), gtsp(**model_inputs(batch)),
                               rtol=1e-5, atol=1e-5)


def test_export_benchmark_counts_fewer_flops():
    # speed is measured by the benchmark itself (graphattn bench gtsp-export), not asserted here
    result = export_benchmark(sizes=tuple(range(30, 70)), channels=32, repeats=1)
    assert result["max_abs_diff"]["masked_vs_exported"] < 1e-4
    dense, exported = result["dense"], result["exported"]
    attention = lambda f: f["attention"] + f["attention_proj"]        # noqa: E731
    assert attention(exported["flops"]) <= 0.55 * attention(dense["flops"])
    assert all(r["seconds"] > 0 for r in (dense, exported, result["masked"]))


@pytest.mark.skipif(shared_data("ogb", "ogbg_molhiv") is None, reason="ogbg-molhiv not given (GRAPHATTN_SHARED_DATA)")
def test_export_equals_masked_model_on_real_molecules(tmp_path):
    bench = load_dataset("ogbg-molhiv", str(shared_data("ogb")), cache_dir=str(tmp_path))
    batch = Batch.from_data_list(list(bench.subset("test")[:64]))
    gtsp = GTSP(GPS(32, 1, num_layers=4, heads=4),
                GTSPConfig(token_ratio=0.5, edge_ratio=0.5, head_density=0.5, layer_keep=0.5, weight_density=0.5,
                           epochs=2))
    _train_few_steps(gtsp, batch)
    small = gtsp.export()
    torch.testing.assert_close(small(**model_inputs(batch)), gtsp(**model_inputs(batch)), rtol=1e-5, atol=1e-5)
    assert count_flops(small, batch).total < 0.6 * count_flops(gtsp, batch).total
