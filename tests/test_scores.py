"""The gat and gatv2 score functions of the engine against a per-edge float64 oracle written with PyG's
``softmax`` and plain autograd: outputs and every gradient (q, k, v, bias, edge_k, edge_v, att), on the
reference and the compiled CPU kernels, with shuffled edges, duplicate edges, empty rows, every normaliser
and dropout; then the call record's flattening and the C struct's layout."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.utils import softmax as pyg_softmax

import sparse_kernels as sk
from sparse_kernels import call as kc
from sparse_kernels import cpu
from sparse_kernels.dropout import keep_mask

DT = torch.float64


def _graph(n_src: int, n_dst: int, num_edges: int) -> torch.Tensor:
    """Random edges in shuffled order, with duplicates and (for n_dst > 3) at least one empty row."""
    src = torch.randint(0, n_src, (num_edges,))
    dst = torch.randint(0, max(n_dst - 1, 1), (num_edges,))      # the last destination has no edge
    return torch.stack([src, dst])[:, torch.randperm(num_edges)]


def _oracle(q, k, v, edge_index, n_dst, score, slope, att, bias, edge_k, edge_v, normalizer, seed, p):
    src, dst = edge_index
    if score == "gat":
        s = F.leaky_relu(q[dst, :, 0] + k[src, :, 0] + (0 if bias is None else bias), slope)
    else:
        z = q[dst] + k[src] + (0 if edge_k is None else edge_k)
        s = (F.leaky_relu(z, slope) * att).sum(-1) + (0 if bias is None else bias)
    if normalizer == "softmax":
        a = pyg_softmax(s, dst, num_nodes=n_dst)
    elif normalizer == "sigmoid":
        a = torch.sigmoid(s)
    else:
        sp = F.softplus(s)
        a = sp / torch.zeros(n_dst, s.size(1), dtype=s.dtype).index_add(0, dst, sp)[dst]
    if p > 0:
        a = a * keep_mask(torch.arange(s.size(0)), s.size(1), seed, sk.dropout.threshold(p)).to(a.dtype) / (1 - p)
    msg = v[src] + (0 if edge_v is None else edge_v)
    return torch.zeros(n_dst, *v.shape[1:], dtype=v.dtype).index_add(0, dst, a.unsqueeze(-1) * msg)


CASES = [  # score, heads, channels, bias, edge_k, edge_v, normalizer, dropout
    ("gat", 3, 5, False, False, False, "softmax", 0.0),
    ("gat", 2, 7, True, False, True, "softmax", 0.3),
    ("gat", 1, 16, True, False, False, "sigmoid", 0.0),
    ("gat", 4, 3, False, False, False, "softplus", 0.0),
    ("gatv2", 3, 5, False, False, False, "softmax", 0.0),
    ("gatv2", 2, 9, True, True, True, "softmax", 0.25),
    ("gatv2", 1, 8, False, True, False, "sigmoid", 0.0),
    ("gatv2", 2, 4, True, False, False, "softplus", 0.0),
]


@pytest.mark.parametrize("kernels", ["reference", "cpu"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_scores_match_the_oracle(kernels, case):
    if kernels == "cpu" and not cpu.available():
        pytest.skip(f"CPU kernels unavailable: {cpu.load_error()}")
    score, heads, channels, with_bias, with_ek, with_ev, normalizer, p = case
    n_src, n_dst, num_edges = 13, 11, 70
    edge_index = _graph(n_src, n_dst, num_edges)
    width = 1 if score == "gat" else channels
    leaves = dict(q=torch.randn(n_dst, heads, width, dtype=DT), k=torch.randn(n_src, heads, width, dtype=DT),
                  v=torch.randn(n_src, heads, channels, dtype=DT))
    if score == "gatv2":
        leaves["att"] = torch.randn(heads, channels, dtype=DT)
    if with_bias:
        leaves["bias"] = torch.randn(num_edges, heads, dtype=DT)
    if with_ek:
        leaves["edge_k"] = torch.randn(num_edges, heads, channels, dtype=DT)
    if with_ev:
        leaves["edge_v"] = torch.randn(num_edges, heads, channels, dtype=DT)
    for t in leaves.values():
        t.requires_grad_(True)
    get = leaves.get
    seed = torch.tensor([1234567], dtype=torch.long)
    csr = sk.build_csr(edge_index, n_src, n_dst)
    kernel_set = sk.ops.REFERENCE_KERNELS if kernels == "reference" else cpu.kernels()
    with sk.dispatch.kernel_override(kernels, "cpu", kernel_set):
        assert sk.dispatch.select_kernels("attention_fwd", "cpu", sk.dispatch.Features(DT, score=score)).name == kernels
        out = sk.attention(get("q"), get("k"), get("v"), csr, get("bias"), normalizer=normalizer, score=score,
                           negative_slope=0.15, att=get("att"), edge_k=get("edge_k"), edge_v=get("edge_v"),
                           dropout=p, seed=seed)
    ref = _oracle(get("q"), get("k"), get("v"), edge_index, n_dst, score, 0.15, get("att"), get("bias"),
                  get("edge_k"), get("edge_v"), normalizer, seed, p)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert out[-1].abs().max() == 0                                   # the empty row
    grad = torch.randn_like(ref)
    names = list(leaves)
    mine = torch.autograd.grad(out, [leaves[n] for n in names], grad)
    theirs = torch.autograd.grad(ref, [leaves[n] for n in names], grad)
    for name, a, b in zip(names, mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=lambda m: f"d{name}: {m}")


def test_gat_weights_and_compile_match_eager():
    """attention_weights gives the oracle's softmax; torch.compile(fullgraph=True) traces the gat score."""
    import graphattn as ga

    edge_index = _graph(9, 9, 40)
    q, k, v = torch.randn(9, 2, 1), torch.randn(9, 2, 1), torch.randn(9, 2, 4)
    graph = ga.AttentionGraph(edge_index, 9, 9)
    w = ga.attention_weights(q, k, graph, score="gat", negative_slope=0.2)
    s = F.leaky_relu(q[edge_index[1], :, 0] + k[edge_index[0], :, 0], 0.2)
    torch.testing.assert_close(w, pyg_softmax(s, edge_index[1], num_nodes=9))
    eager = ga.graph_attention(q, k, v, graph, score="gat")
    compiled = torch.compile(lambda q, k, v: ga.graph_attention(q, k, v, graph, score="gat"), fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), eager)


@pytest.mark.parametrize("kwargs, message", [
    (dict(score="nope"), "score must be one of"),
    (dict(score="gat"), "shape \\[N, heads, 1\\]"),
    (dict(score="gatv2"), "needs att"),
    (dict(score="gatv2", att=torch.randn(2, 3)), "att must have shape"),
    (dict(score="dot", att=torch.randn(2, 4)), "takes none"),
    (dict(score="gatv2", att=torch.randn(2, 4), scale=0.5), "scale applies to the dot-product score only"),
    (dict(score="gatv2", att=torch.randn(2, 4), negative_slope=float("nan")), "negative_slope must be a finite number"),
])
def test_bad_score_arguments_are_refused_by_name(kwargs, message):
    q, k = torch.randn(5, 2, 4), torch.randn(5, 2, 4)
    csr = sk.build_csr(torch.tensor([[0, 1], [1, 2]]), 5, 5)
    with pytest.raises((ValueError, TypeError), match=message):
        sk.attention(q, k, k, csr, **kwargs)


def test_call_record_round_trips_through_the_flat_arguments():
    csr = sk.build_csr(_graph(4, 4, 9), 4, 4)
    inputs = kc.Inputs(torch.randn(4, 1, 2), torch.randn(4, 1, 2), torch.randn(4, 1, 2), bias=torch.randn(9, 1))
    call = kc.KernelCall(inputs, kc.GraphIndex.of(csr), kc.Options(0.5, "sigmoid", "dot", 0.1, 7, 1.5, False))
    flat = call.flat()
    assert len(flat) == len(kc.FLAT_FIELDS)
    again = kc.KernelCall.from_flat(flat)
    for a, b in zip(again.flat(), flat):
        assert a is b
    arguments = kc.op_schema().split(" -> ")[0]
    assert arguments.count(",") + 1 == len(kc.FLAT_FIELDS) and "Tensor? att" in arguments and "str score" in arguments


def test_c_struct_mirror_follows_the_c_layout():
    """The binding's struct is read from the library's own field list and checked against its offsets."""
    if not cpu.available():
        pytest.skip(f"CPU kernels unavailable: {cpu.load_error()}")
    struct = cpu._library().call_struct
    names = [name for name, _ in struct._fields_]
    for field in ("q", "edge_k", "att", "negative_slope", "score", "datt", "error"):
        assert field in names
    for field in dataclasses.fields(kc.Inputs):
        assert field.name in names or field.name == "seed"
