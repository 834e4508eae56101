"""FLOPs through torch.utils.flop_counter.FlopCounterMode: the engine's formulas (sparse_kernels.flops), the
layers counting themselves eager and compiled, and graphattn.utils.count_flops's parts."""
import collections

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch.utils.flop_counter import FlopCounterMode

import sparse_kernels as sk
from graphattn.bench.gtsp_export import random_molecules
from graphattn.graph import AttentionGraph
from graphattn.models import GPS, GraphTransformer
from graphattn.nn import GINAttention, GPSLayer, GraphAttnConv
from graphattn.nn.multihead_attention import MultiheadGraphAttention
from graphattn.sparsify import SparseLinear
from graphattn.utils import count_flops, time_inference
from sparse_kernels.call import GraphIndex, Inputs, KernelCall, Options
from sparse_kernels.flops import NORMALISER_BWD, NORMALISER_FWD, attention_bwd_flops, attention_fwd_flops

ENGINE = ("sparse_kernels.attention_fwd", "sparse_kernels.sddmm", "sparse_kernels.edge_softmax",
          "sparse_kernels.spmm")


def _random_graph(num_nodes: int, num_edges: int, seed: int = 0) -> AttentionGraph:
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=torch.Generator().manual_seed(seed))
    return AttentionGraph(edge_index, num_nodes)


def _engine_flops(counts: dict, backward: bool = False) -> int:
    names = ENGINE + (("sparse_kernels.attention_bwd", "sparse_kernels.edge_softmax_bwd") if backward else ())
    return sum(n for op, n in counts.get("Global", {}).items() if str(op) in names)


def _compiled_counts(fn, *args) -> collections.Counter:
    """FlopCounterMode over the graphs torch.compile(fullgraph=True) makes of ``fn`` (forward and
    backward), run on the real inputs: Dynamo does not compile under a dispatch mode, so the counter
    runs inside the compiled artefact."""
    counts = collections.Counter()

    def compiler(gm, example_inputs):
        def run(*inputs):
            with FlopCounterMode(display=False) as counter:
                out = torch.fx.Interpreter(gm).run(*inputs)     # not gm(...): no module hooks in compiled code
            counts.update({str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()})
            return out
        return make_boxed_func(run)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=aot_autograd(fw_compiler=compiler, bw_compiler=compiler), fullgraph=True)
    out = compiled(*args)
    return counts, out


# --------------------------------------------------------------------------- engine formulas
def _call(e, n, h, d, dv, score="dot", normalizer="softmax", bias=False, edge_k=False, edge_v=False,
          dropout=False):
    size = torch.Size
    inputs = Inputs(size([n, h, d]), size([n, h, d]), size([n, h, dv]), size([e, h]) if bias else None,
                    size([e, h, d]) if edge_k else None, size([e, h, dv]) if edge_v else None,
                    size([h, d]) if score == "gatv2" else None, size([1]) if dropout else None)
    graph = GraphIndex(size([n + 1]), size([e]), size([e]), None, size([n + 1]), size([e]), size([e]))
    return KernelCall(inputs, graph, Options(normalizer=normalizer, score=score, p_threshold=1 if dropout else 0))


@pytest.mark.parametrize("normalizer", sorted(NORMALISER_FWD))
def test_formulas_by_hand(normalizer):
    e, n, h, d, dv = 7, 5, 3, 8, 6
    c = NORMALISER_FWD[normalizer]
    assert attention_fwd_flops(_call(e, n, h, d, dv, normalizer=normalizer)) == e * h * (2 * d + 1 + c + 2 * dv)
    every = _call(e, n, h, d, dv, normalizer=normalizer, bias=True, edge_k=True, edge_v=True, dropout=True)
    assert attention_fwd_flops(every) == e * h * (2 * d + 1 + d + 1 + c + 1 + 3 * dv)
    assert attention_fwd_flops(_call(e, n, h, 1, dv, "gat", normalizer)) == e * h * (2 + c + 2 * dv)
    gatv2 = _call(e, n, h, d, dv, "gatv2", normalizer, bias=True)
    assert attention_fwd_flops(gatv2) == e * h * (4 * d + 1 + c + 2 * dv)
    row = 0 if normalizer == "sigmoid" else 2 * n * h * dv
    b = NORMALISER_BWD[normalizer]
    assert attention_bwd_flops(_call(e, n, h, d, dv, normalizer=normalizer)) == \
        e * h * ((2 * d + 1) + b + 4 * dv + 4 * d + 1) + row
    assert attention_bwd_flops(_call(e, n, h, d, dv, "gatv2", normalizer)) == e * h * (4 * d + b + 4 * dv + 6 * d) + row
    assert attention_bwd_flops(_call(e, n, h, 1, dv, "gat", normalizer)) == e * h * (2 + b + 4 * dv + 3) + row


@pytest.mark.parametrize("score", ["dot", "gat", "gatv2"])
def test_eager_engine_calls_reach_the_counter_forward_and_backward(score):
    torch.manual_seed(0)
    n, h, d = 11, 3, 1 if score == "gat" else 5
    graph = _random_graph(n, 40)
    csr = sk.build_csr(graph.edge_index, n, n)
    q, k, v = (torch.randn(n, h, d if i < 2 else 4, dtype=torch.float64, requires_grad=True) for i in range(3))
    att = torch.randn(h, d, dtype=torch.float64, requires_grad=True) if score == "gatv2" else None
    bias = torch.randn(40, h, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        out = sk.attention(q, k, v, csr, bias, score=score, att=att)
        out.sum().backward()
    counts = {str(op): c for op, c in counter.get_flop_counts()["Global"].items()}
    call = _call(40, n, h, d, 4, score, bias=True)
    assert counts == {"sparse_kernels.attention_fwd": attention_fwd_flops(call),
                      "sparse_kernels.attention_bwd": attention_bwd_flops(call)}


def test_unfused_ops_count_2ehd_each_and_their_backward():
    torch.manual_seed(0)
    graph = _random_graph(9, 30)
    q, k, v = (torch.randn(9, 2, 16, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        csr = sk.build_csr(graph.edge_index, 9, 9)
        w = sk.edge_softmax(sk.sddmm(q, k, csr), csr)
        sk.spmm(w, v, csr).sum().backward()
    counts = {str(op): c for op, c in counter.get_flop_counts()["Global"].items()}
    ehd = 30 * 2 * 16
    assert counts["sparse_kernels.sddmm"] == 2 * ehd + 2 * ehd            # forward, and dw of spmm
    assert counts["sparse_kernels.spmm"] == 2 * ehd + 3 * 2 * ehd          # forward; dv, dq, dk
    assert counts["sparse_kernels.edge_softmax"] == 30 * 2 * NORMALISER_FWD["softmax"]
    assert counts["sparse_kernels.edge_softmax_bwd"] == 30 * 2 * NORMALISER_BWD["softmax"]


# --------------------------------------------------------------------------- layers count themselves
H, D = 4, 32


def _layers():
    gps = GPSLayer(H * D, None, heads=H, norm=None)
    return {"GraphAttnConv": (GraphAttnConv(H * D, D, heads=H, root_weight=False), False),
            "GPSLayer": (gps, True),
            "GINAttention": (GINAttention(H * D, heads=H), False)}


def _inputs(full: bool):
    """Eight graphs of 12 nodes: per-graph full attention for GPSLayer (equal sizes: no padding in dense
    blocks), 600 random edges for the others."""
    torch.manual_seed(0)
    x = torch.randn(96, H * D)
    batch = torch.arange(8).repeat_interleave(12)
    graph = AttentionGraph.full_per_graph(batch) if full else _random_graph(96, 600)
    return x, batch, graph


def _forward(name, layer, x, batch, graph):
    if name == "GPSLayer":
        return layer(x, None, batch, attn_graph=graph, num_graphs=8)
    return layer(x, graph)


@pytest.mark.parametrize("name", ["GraphAttnConv", "GPSLayer", "GINAttention"])
def test_layers_count_4ehd_eager_and_compiled(name):
    layer, full = _layers()[name]
    x, batch, graph = _inputs(full)
    expected = 4 * graph.num_edges * H * D
    eager = count_flops(layer, {"x": x, "edge_index": graph} if name != "GPSLayer" else
                        {"x": x, "edge_index": None, "batch": batch, "attn_graph": graph, "num_graphs": 8})
    assert expected <= eager.attention <= 1.05 * expected
    counts, _ = _compiled_counts(lambda x: _forward(name, layer, x, batch, graph), x.requires_grad_())
    compiled_forward = counts["sparse_kernels.attention_fwd"]
    assert expected <= compiled_forward <= 1.05 * expected
    assert counts["sparse_kernels.attention_bwd"] == 0                   # no backward run yet


def test_compiled_backward_is_counted():
    layer, full = _layers()["GPSLayer"]
    x, batch, graph = _inputs(full)
    counts, out = _compiled_counts(lambda x: _forward("GPSLayer", layer, x, batch, graph), x.requires_grad_())
    out.sum().backward()
    e = graph.num_edges
    assert counts["sparse_kernels.attention_bwd"] == e * H * (10 * D + 6) + 2 * 96 * H * D
    assert counts["sparse_kernels.attention_bwd"] > 2 * counts["sparse_kernels.attention_fwd"]


@pytest.mark.parametrize("path", ["csr", "dense_blocks"])
def test_attention_count_falls_with_pruned_edges_and_heads(path):
    torch.manual_seed(0)
    attn = MultiheadGraphAttention(H * D, H)
    x, batch, graph = _inputs(full=True)
    half = AttentionGraph.full_per_graph(torch.arange(8).repeat_interleave(12)[:48])    # 4 of the 8 graphs

    def flops(x, g):
        with sk.force_path(path):
            return count_flops(attn, {"x": x, "graph": g})

    dense = flops(x, graph)
    assert flops(x[:48], half).attention == dense.attention // 2
    attn.prune_heads(torch.tensor([0, 2, 3]))
    assert flops(x, graph).attention == dense.attention * 3 // 4
    with sk.force_path("csr"):
        with_backward = count_flops(attn, {"x": x, "graph": graph}, backward=True)
    n, inner, e = x.size(0), 3 * D, graph.num_edges
    attention_bwd = e * 3 * (10 * D + 6) + 2 * n * 3 * D
    out_proj = 2 * (2 * n * inner * H * D)                                # dW and dX
    in_proj = 2 * n * H * D * 3 * inner                                   # dW (x needs no gradient)
    assert with_backward.backward == attention_bwd + out_proj + in_proj


# --------------------------------------------------------------------------- count_flops parts
def test_multihead_attention_parts():
    batch = torch.tensor([0, 0, 0, 1, 1, 2])
    graph = AttentionGraph.full_per_graph(batch)                      # 9 + 4 + 1 = 14 edges
    attn = MultiheadGraphAttention(12, 3)
    with sk.force_path("csr"):
        flops = count_flops(attn, {"x": torch.randn(6, 12), "graph": graph})
    assert flops.attention == 14 * 3 * (4 * 4 + 1 + NORMALISER_FWD["softmax"])
    assert flops.attention_proj == 2 * 6 * 36 * 12 + 2 * 6 * 12 * 12   # in_proj, out_proj (biases: elementwise)
    assert flops.linear == flops.message_passing == flops.backward == 0
    assert flops.total == flops.attention + flops.attention_proj


def test_gps_parts_and_mode_restored():
    data = random_molecules((3, 8, 5), generator=torch.Generator().manual_seed(0))
    model = GPS(16, 2, num_layers=2, heads=4, node_encoder=8, edge_encoder=4, local_conv="gine").train()
    flops = count_flops(model, data)
    assert model.training
    n, e = data.num_nodes, data.num_edges
    assert flops.attention == 2 * 3 * 8 * 8 * 4 * (4 * 4)         # dense blocks pad the 3 graphs to 8 nodes
    assert flops.attention_proj == 2 * (2 * n * 16 * 48 + 2 * n * 16 * 16)
    ffn, gine = 2 * n * 16 * 32 * 2, 2 * 2 * n * 16 * 16
    encoders, head = 2 * n * 8 * 16 + 2 * e * 4 * 16, 2 * 3 * 16 * 2
    assert flops.linear == 2 * (ffn + gine) + encoders + head
    assert flops.message_passing == 2 * e * 16 + n * 16 + n            # GINE's sums; the mean readout's sum, count
    assert flops.by_module["GPS.layers.0.attn"] == flops.by_module["GPS.layers.1.attn"]
    assert sum(v for k, v in flops.by_module.items() if k.count(".") == 0) == flops.total


def test_graph_transformer_counts_the_engine_and_its_projections():
    data = random_molecules((4, 6), generator=torch.Generator().manual_seed(0))
    model = GraphTransformer(16, 1, num_layers=2, heads=2, node_encoder=8, edge_encoder=4)
    flops = count_flops(model, data)
    # edge-modulated scores are elementwise products outside the engine (not counted); the engine
    # counts the normaliser and the aggregation
    assert flops.attention == 2 * data.num_edges * 2 * (NORMALISER_FWD["softmax"] + 2 * 8)
    assert flops.attention_proj > 0 and flops.linear > 0


def test_sparse_weights_count_their_nonzeros():
    linear = torch.nn.Linear(10, 4)
    with torch.no_grad():
        linear.weight[:, :5] = 0.0
    dense = count_flops(torch.nn.Sequential(linear), {"input": torch.randn(3, 10)})
    sparse = count_flops(torch.nn.Sequential(SparseLinear(linear)), {"input": torch.randn(3, 10)})
    assert dense.linear == 2 * 3 * 40                                   # a dense weight runs all of it
    assert sparse.linear == 2 * 3 * 20


def test_bad_input_and_timing():
    with pytest.raises(TypeError, match="model"):
        count_flops(object(), {})
    model = torch.nn.Linear(4, 2)
    assert time_inference(model, [{"input": torch.randn(3, 4)}], repeats=2) > 0
    with pytest.raises(ValueError, match="repeats"):
        time_inference(model, [], repeats=0)
