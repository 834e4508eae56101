"""GATConv / GATv2Conv against PyG's classes of the same names after a strict ``state_dict`` load, in float64:
outputs, returned attention weights (and the returned edge_index), gradients of the inputs and of every
parameter, across the arguments and awkward graphs (isolated nodes, duplicate edges, existing self-loops,
empty graphs, bipartite blocks as PyG's NeighborLoader builds them, edges in shuffled order); then the
PyG machinery (explain mode, hooks, ``to_hetero``, ``torch.compile``), dropout and the two options that
follow the GAT authors' code."""
import itertools

import pytest
import torch
from torch_geometric.nn import GATConv as PyGGATConv
from torch_geometric.nn import GATv2Conv as PyGGATv2Conv
from torch_geometric.utils import softmax, to_torch_coo_tensor, to_torch_csr_tensor

from graphattn import AttentionGraph
from graphattn.functional import dropout
from graphattn.nn import GATConv, GATv2Conv

F_IN, F_DST, F_EDGE, C = 6, 5, 4, 3
PAIRS = {"gat": (PyGGATConv, GATConv), "gatv2": (PyGGATv2Conv, GATv2Conv)}
FILLS = ["mean", 0.5, torch.tensor([0.1, -0.2, 0.3, 0.4]), "max", "add", "mul", "min"]


def _graph(kind: str, bipartite: bool, gen: torch.Generator):
    """``(num_src, num_dst, edge_index)``, edges in shuffled order."""
    if kind == "isolated":            # destinations 8..11 have no in-edge (and only some get a loop)
        n_src, n_dst = (14, 12) if bipartite else (12, 12)
        ei = torch.stack([torch.randint(0, n_src, (30,), generator=gen), torch.randint(0, 8, (30,), generator=gen)])
    elif kind == "loops":             # duplicate edges, existing self-loops (some repeated)
        n_src, n_dst = (9, 7) if bipartite else (8, 8)
        ei = torch.stack([torch.randint(0, n_src, (15,), generator=gen), torch.randint(0, n_dst, (15,), generator=gen)])
        ei = torch.cat([ei, ei, torch.tensor([[1, 1, 1, 4, 0], [1, 1, 1, 4, 0]])], 1)
    elif kind == "more_dst":          # bipartite with more destinations than sources: loops only for i < N_src
        n_src, n_dst = (5, 9) if bipartite else (9, 9)
        ei = torch.stack([torch.randint(0, n_src, (20,), generator=gen), torch.randint(0, 5, (20,), generator=gen)])
    elif kind == "no_edges":
        n_src, n_dst = (6, 4) if bipartite else (5, 5)
        ei = torch.zeros(2, 0, dtype=torch.long)
    else:                             # "empty": no node at all
        n_src = n_dst = 0
        ei = torch.zeros(2, 0, dtype=torch.long)
    return n_src, n_dst, ei[:, torch.randperm(ei.size(1), generator=gen)]


def _run(module, x, ei, ea, size, grad_seed=1):
    """Output, (edge_index', alpha) and the gradients of inputs and parameters under a random linear loss
    on the output and on the weights."""
    leaves = [t for t in (x if isinstance(x, tuple) else (x,)) if t is not None]
    leaves = [t.clone().requires_grad_() for t in leaves]
    x_in = tuple(leaves) + (None,) * (len(x) - len(leaves)) if isinstance(x, tuple) else leaves[0]
    edge = None if ea is None else ea.clone().requires_grad_()
    kwargs = {} if size is None else {"size": size}
    out, (ei_out, alpha) = module(x_in, ei, edge, return_attention_weights=True, **kwargs)
    gen = torch.Generator().manual_seed(grad_seed)
    loss = (out * torch.randn(out.shape, dtype=out.dtype, generator=gen)).sum()
    loss = loss + (alpha * torch.randn(alpha.shape, dtype=alpha.dtype, generator=gen)).sum()
    inputs = leaves + ([edge] if edge is not None else [])
    params = [p for p in module.parameters()]
    grads = torch.autograd.grad(loss, inputs + params, allow_unused=True) if loss.requires_grad else ()
    return out, ei_out, alpha, grads


def compare(kind_name, in_channels, x, ei, ea=None, size=None, tol=1e-10, dtype=torch.double, **args):
    ref_cls, ours_cls = PAIRS[kind_name]
    torch.manual_seed(0)
    ref = ref_cls(in_channels, C, **args).to(dtype)
    torch.manual_seed(0)
    ours = ours_cls(in_channels, C, **args).to(dtype)
    for (name, a), (name_b, b) in zip(ref.state_dict().items(), ours.state_dict().items()):   # same init
        assert name == name_b and torch.equal(a, b), name
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert repr(ours) == repr(ref)
    out_r, ei_r, alpha_r, grads_r = _run(ref, x, ei, ea, size)
    out, ei_o, alpha, grads = _run(ours, x, ei, ea, size)
    torch.testing.assert_close(out, out_r, atol=tol, rtol=tol)
    assert torch.equal(ei_o, ei_r)
    torch.testing.assert_close(alpha, alpha_r, atol=tol, rtol=tol)
    assert len(grads) == len(grads_r)
    for a, b in zip(grads, grads_r):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def _inputs(kind, bipartite, edge_dim, gen, dtype=torch.double):
    n_src, n_dst, ei = _graph(kind, bipartite, gen)
    x_src = torch.randn(n_src, F_IN, dtype=dtype, generator=gen)
    x = (x_src, torch.randn(n_dst, F_DST, dtype=dtype, generator=gen)) if bipartite else x_src
    ea = torch.randn(ei.size(1), edge_dim, dtype=dtype, generator=gen) if edge_dim else None
    return ((F_IN, F_DST) if bipartite else F_IN), x, ei, ea


KINDS = ["isolated", "loops", "more_dst", "no_edges", "empty"]
CONFIGS = list(itertools.product(["gat", "gatv2"], [1, 3], [True, False], [None, F_EDGE], [True, False], KINDS))


@pytest.mark.parametrize("layer,heads,concat,edge_dim,bipartite,kind", CONFIGS)
def test_equals_pyg(layer, heads, concat, edge_dim, bipartite, kind):
    if kind == "more_dst" and edge_dim is not None:
        pytest.skip("PyG's fill_value='mean' scatters into N_src rows and fails on destinations >= N_src")
    gen = torch.Generator().manual_seed(hash((layer, heads, concat, edge_dim, bipartite, kind)) % 2 ** 31)
    in_channels, x, ei, ea = _inputs(kind, bipartite, edge_dim, gen)
    compare(layer, in_channels, x, ei, ea, heads=heads, concat=concat, edge_dim=edge_dim)


@pytest.mark.parametrize("layer,heads,concat,edge_dim,bipartite,kind", CONFIGS[::7])
def test_equals_pyg_float32(layer, heads, concat, edge_dim, bipartite, kind):
    if kind == "more_dst" and edge_dim is not None:
        pytest.skip("PyG's fill_value='mean' scatters into N_src rows and fails on destinations >= N_src")
    gen = torch.Generator().manual_seed(hash((layer, heads, concat, edge_dim, bipartite, kind)) % 2 ** 31)
    in_channels, x, ei, ea = _inputs(kind, bipartite, edge_dim, gen, dtype=torch.float32)
    compare(layer, in_channels, x, ei, ea, tol=1e-5, dtype=torch.float32, heads=heads, concat=concat,
            edge_dim=edge_dim)


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
@pytest.mark.parametrize("fill_value", FILLS, ids=lambda f: str(f) if not torch.is_tensor(f) else "tensor")
@pytest.mark.parametrize("kind", ["loops", "isolated"])
def test_fill_values_equal_pyg(layer, fill_value, kind):
    gen = torch.Generator().manual_seed(3)
    in_channels, x, ei, ea = _inputs(kind, False, F_EDGE, gen)
    compare(layer, in_channels, x, ei, ea, heads=2, edge_dim=F_EDGE, fill_value=fill_value)
    compare(layer, in_channels, x, ei, ea[:, :1].squeeze(1), heads=2, edge_dim=1,   # 1-D edge weights
            fill_value=fill_value if not torch.is_tensor(fill_value) else fill_value[:1])


OPTIONS = [dict(add_self_loops=False), dict(residual=True), dict(bias=False), dict(residual=True, bias=False),
           dict(negative_slope=0.01), dict(add_self_loops=False, residual=True)]


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
@pytest.mark.parametrize("options", OPTIONS + [dict(share_weights=True)], ids=str)
@pytest.mark.parametrize("bipartite", [False, True])
@pytest.mark.parametrize("edge_dim", [None, F_EDGE])
def test_options_equal_pyg(layer, options, bipartite, edge_dim):
    if "share_weights" in options and (layer == "gat" or bipartite):
        pytest.skip("share_weights: GATv2 with equal source and destination sizes")
    gen = torch.Generator().manual_seed(7)
    in_channels, x, ei, ea = _inputs("loops", bipartite, edge_dim, gen)
    compare(layer, in_channels, x, ei, ea, heads=2, edge_dim=edge_dim, **options)


def test_share_weights_bipartite_same_width():
    gen = torch.Generator().manual_seed(8)
    x = tuple(torch.randn(n, F_IN, dtype=torch.double, generator=gen) for n in (9, 7))
    ei = _graph("loops", True, gen)[2]
    compare("gatv2", F_IN, x, ei, heads=2, share_weights=True)


@pytest.mark.parametrize("residual", [False, True])
def test_gat_source_only_and_size(residual):
    """``(x_src, None)`` with ``size``: PyG's GATConv then has no destination term (and no residual)."""
    gen = torch.Generator().manual_seed(4)
    x_src = torch.randn(9, F_IN, dtype=torch.double, generator=gen)
    ei = torch.stack([torch.randint(0, 9, (25,), generator=gen), torch.randint(0, 6, (25,), generator=gen)])
    compare("gat", (F_IN, F_DST), (x_src, None), ei, size=(9, 6), heads=2, residual=residual)
    compare("gat", F_IN, x_src, ei, size=(9, 9), heads=2, residual=residual)


def _neighbor_block(gen):
    """A bipartite block as PyG's NeighborLoader gives it: sampled nodes ``n_id`` with the seeds first,
    ``x_src = x[n_id]``, ``x_dst = x_src[:num_dst]``, local edges into the seeds, ``size=(num_src, num_dst)``."""
    x = torch.randn(30, F_IN, dtype=torch.double, generator=gen)
    full = torch.randint(0, 30, (2, 200), generator=gen)
    seeds = torch.tensor([3, 17, 8, 25])
    into = full[:, torch.isin(full[1], seeds)]
    n_id = torch.cat([seeds, into[0][~torch.isin(into[0], seeds)].unique()])
    local = torch.full((30,), -1, dtype=torch.long)
    local[n_id] = torch.arange(n_id.numel())
    edge_index = local[into]
    x_src = x[n_id]
    return (x_src, x_src[:seeds.numel()]), edge_index, (n_id.numel(), seeds.numel())


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
def test_neighbor_loader_blocks(layer):
    x, ei, size = _neighbor_block(torch.Generator().manual_seed(5))
    kwargs = {"size": size} if layer == "gat" else {}
    compare(layer, F_IN, x, ei, heads=2, residual=True, **kwargs)
    compare(layer, (F_IN, F_IN), x, ei, heads=2, **kwargs)


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
def test_sparse_adjacencies_and_attention_graph(layer):
    gen = torch.Generator().manual_seed(6)
    ei = torch.unique(torch.randint(0, 9, (2, 30), generator=gen), dim=1)
    ei = torch.cat([ei, torch.tensor([[2], [2]])], 1).unique(dim=1)            # one existing self-loop
    x = torch.randn(9, F_IN, dtype=torch.double, generator=gen)
    ref_cls, ours_cls = PAIRS[layer]
    ref = ref_cls(F_IN, C, heads=2).double()
    ours = ours_cls(F_IN, C, heads=2).double()
    ours.load_state_dict(ref.state_dict())
    expected = ref(x, ei)
    torch.testing.assert_close(ours(x, AttentionGraph(ei, 9)), expected)
    for adj in (to_torch_csr_tensor(ei.flip(0), size=(9, 9)), to_torch_coo_tensor(ei.flip(0), size=(9, 9))):
        out_r, (adj_r, alpha_r) = ref(x, adj, return_attention_weights=True)
        out, (adj_o, alpha) = ours(x, adj, return_attention_weights=True)
        torch.testing.assert_close(out, out_r)
        torch.testing.assert_close(alpha, alpha_r)
        assert adj_o.layout == adj_r.layout and adj_o.shape == adj_r.shape
        torch.testing.assert_close(adj_o.to_dense(), adj_r.to_dense())


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
def test_explain_mode_and_hooks_match_pyg(layer):
    """Explain mode (an edge mask on the input edges, PyG's loop handling in ``explain_message``) and a
    message hook that reads ``alpha`` run through PyG's propagate with the engine's weights."""
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

    gen = torch.Generator().manual_seed(9)
    x = torch.randn(8, F_IN, dtype=torch.double, generator=gen)
    ei = torch.randint(0, 8, (2, 24), generator=gen)
    ref_cls, ours_cls = PAIRS[layer]
    ref = ref_cls(F_IN, C, heads=2).double().eval()
    ours = ours_cls(F_IN, C, heads=2).double().eval()
    ours.load_state_dict(ref.state_dict())
    mask = torch.randn(ei.size(1), dtype=torch.double, generator=gen)
    outs = []
    for module in (ref, ours):
        set_masks(module, mask, ei, apply_sigmoid=True)
        outs.append(module(x, ei))
        clear_masks(module)
    torch.testing.assert_close(outs[1], outs[0])
    assert not torch.allclose(outs[1], ours(x, ei))

    seen = []
    handle = ours.register_message_forward_hook(lambda module, inputs, output: seen.append(inputs[0]["alpha"]))
    out, (_, alpha) = ours(x, ei, return_attention_weights=True)
    handle.remove()
    torch.testing.assert_close(out, ref(x, ei))
    torch.testing.assert_close(seen[0], alpha)


def test_to_hetero_matches_pyg():
    from torch_geometric.data import HeteroData
    from torch_geometric.nn import to_hetero

    torch.manual_seed(0)
    data = HeteroData()
    data["paper"].x, data["author"].x = torch.randn(8, 16), torch.randn(10, 8)
    data["paper", "cites", "paper"].edge_index = torch.randint(0, 8, (2, 20))
    data["author", "writes", "paper"].edge_index = torch.stack([torch.randint(0, 10, (15,)),
                                                                torch.randint(0, 8, (15,))])
    data["paper", "rev_writes", "author"].edge_index = data["author", "writes", "paper"].edge_index.flip(0)

    class Net(torch.nn.Module):
        def __init__(self, cls):
            super().__init__()
            self.conv1 = cls((-1, -1), 8, heads=2, add_self_loops=False)
            self.conv2 = cls((-1, -1), 4, heads=2, add_self_loops=False)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    for ref_cls, ours_cls in PAIRS.values():
        ref = to_hetero(Net(ref_cls), data.metadata())
        ours = to_hetero(Net(ours_cls), data.metadata())
        ref(data.x_dict, data.edge_index_dict)
        ours(data.x_dict, data.edge_index_dict)                         # lazy parameters
        ours.load_state_dict(ref.state_dict())
        out_r, out = ref(data.x_dict, data.edge_index_dict), ours(data.x_dict, data.edge_index_dict)
        for key in out_r:
            torch.testing.assert_close(out[key], out_r[key], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
def test_compile_fullgraph_forward_backward(layer):
    torch._dynamo.reset()
    _, ours_cls = PAIRS[layer]
    conv = ours_cls(F_IN, C, heads=2, edge_dim=F_EDGE).eval()
    x, ei = torch.randn(7, F_IN), torch.tensor([[0, 1, 2, 3, 3, 5, 6, 4], [1, 1, 2, 4, 0, 5, 2, 6]])
    ea = torch.randn(ei.size(1), F_EDGE)
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
    leaves = [x.clone().requires_grad_(), ea.clone().requires_grad_()]
    out = compiled(leaves[0], ei, leaves[1])
    torch.testing.assert_close(out, conv(x, ei, ea))
    grads = torch.autograd.grad(out.square().sum(), leaves)
    ref_leaves = [x.clone().requires_grad_(), ea.clone().requires_grad_()]
    ref = torch.autograd.grad(conv(ref_leaves[0], ei, ref_leaves[1]).square().sum(), ref_leaves)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("layer", ["gat", "gatv2"])
def test_attention_dropout_in_training_only(layer):
    _, ours_cls = PAIRS[layer]
    conv = ours_cls(F_IN, C, heads=2, dropout=0.5)
    x, ei = torch.randn(10, F_IN), torch.randint(0, 10, (2, 40))
    conv.eval()
    out_eval, (_, alpha_eval) = conv(x, ei, return_attention_weights=True)
    torch.testing.assert_close(conv(x, ei), out_eval)
    conv.train()
    torch.manual_seed(1)
    out_a, (_, alpha_a) = conv(x, ei, return_attention_weights=True)
    torch.manual_seed(1)
    out_b = conv(x, ei)
    torch.testing.assert_close(out_a, out_b)                       # reproducible from the seed
    assert not torch.allclose(out_a, out_eval)
    torch.testing.assert_close(alpha_a, alpha_eval)                # the weights returned are pre-dropout
    out_a.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())


def test_gat_authors_options():
    """``attention_bias``: per-head scalars added to the source and destination terms before the
    LeakyReLU; ``feature_dropout``: dropout of the aggregated projected features only (not of the scores).
    Neither adds a parameter when off."""
    plain = GATConv(F_IN, C, heads=2)
    assert "att_src_bias" not in plain.state_dict() and "att_dst_bias" not in plain.state_dict()
    conv = GATConv(F_IN, C, heads=2, attention_bias=True, feature_dropout=0.5).double()
    assert conv.att_src_bias.shape == (1, 2, 1) and not conv.att_src_bias.any() and not conv.att_dst_bias.any()
    with pytest.raises(RuntimeError, match="Unexpected key"):
        plain.load_state_dict(conv.state_dict())
    with torch.no_grad():
        conv.att_src_bias.copy_(torch.tensor([0.7, -1.5]).view(1, 2, 1))
        conv.att_dst_bias.copy_(torch.tensor([-0.4, 2.0]).view(1, 2, 1))
        conv.bias.normal_()
    x, ei = torch.randn(7, F_IN, dtype=torch.double), torch.randint(0, 7, (2, 20))
    conv.eval()
    out, (loop_ei, alpha) = conv(x, ei, return_attention_weights=True)
    h = conv.lin(x).view(-1, 2, C)
    src, dst = loop_ei
    s_src = (h * conv.att_src).sum(-1) + conv.att_src_bias.view(1, 2)
    s_dst = (h * conv.att_dst).sum(-1) + conv.att_dst_bias.view(1, 2)
    expected = softmax(torch.nn.functional.leaky_relu(s_src[src] + s_dst[dst], 0.2), dst, num_nodes=7)
    torch.testing.assert_close(alpha, expected)
    agg = torch.zeros(7, 2, C, dtype=torch.double).index_add(0, dst, expected.unsqueeze(-1) * h[src])
    torch.testing.assert_close(out, agg.reshape(7, -1) + conv.bias)
    conv.train()
    torch.manual_seed(2)
    out_train, (_, alpha_train) = conv(x, ei, return_attention_weights=True)
    torch.testing.assert_close(alpha_train, alpha)                 # the scores see the undropped features
    torch.manual_seed(2)
    kept = dropout(h, 0.5, True)                                   # the same draw as the layer's
    agg = torch.zeros(7, 2, C, dtype=torch.double).index_add(0, dst, expected.unsqueeze(-1) * kept[src])
    torch.testing.assert_close(out_train, agg.reshape(7, -1) + conv.bias)


def test_lazy_initialisation():
    x_src, x_dst = torch.randn(6, 4), torch.randn(3, 5)
    ei = torch.tensor([[0, 1, 5, 2, 2, 4], [0, 0, 1, 1, 2, 2]])
    assert GATConv(-1, 3, heads=2)(x_src, ei).shape == (6, 6)
    assert GATConv((-1, -1), 3, heads=2, residual=True)((x_src, x_dst), ei).shape == (3, 6)
    assert GATv2Conv(-1, 3, heads=2, concat=False)((x_src, x_dst[:, :4]), ei).shape == (3, 3)
    assert GATv2Conv((-1, -1), 3, heads=2, residual=True)((x_src, x_dst), ei).shape == (3, 6)


def test_isolated_destination_gets_bias_and_residual():
    conv = GATConv((4, 5), 3, heads=2, residual=True, add_self_loops=False).eval()
    torch.nn.init.normal_(conv.bias)
    x_src, x_dst = torch.randn(4, 4), torch.randn(3, 5)
    out = conv((x_src, x_dst), torch.tensor([[0, 1], [0, 0]]))
    torch.testing.assert_close(out[1:], conv.res(x_dst[1:]) + conv.bias)
    assert torch.isfinite(out).all()


def test_bad_input():
    x, ei = torch.randn(5, 4), torch.tensor([[0, 1], [1, 1]])
    with pytest.raises(ValueError, match="edge_attr"):
        GATConv(4, 2)(x, ei, torch.randn(2, 3))                       # no edge_dim
    with pytest.raises(ValueError, match="edge_attr"):
        GATConv(4, 2, edge_dim=3)(x, ei, torch.randn(3, 3))           # wrong number of rows
    with pytest.raises(ValueError, match="fill_value"):
        GATConv(4, 2, edge_dim=3, fill_value="median")
    with pytest.raises(ValueError, match="dropout"):
        GATv2Conv(4, 2, dropout=1.0)
    with pytest.raises(ValueError, match="feature_dropout"):
        GATConv(4, 2, feature_dropout=-0.1)
    with pytest.raises(ValueError, match="x_dst"):
        GATv2Conv(4, 2)((x, None), ei)
    with pytest.raises(ValueError, match="size"):
        GATConv(4, 2)(x, ei, size=(4, 5))
    with pytest.raises(ValueError, match="edge_index"):
        GATConv(4, 2)(x, torch.tensor([[0, 9], [1, 1]]))


