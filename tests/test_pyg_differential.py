"""Weight-loading differential test: graphattn's drop-ins against the PyG layers they replace.

Every configuration builds the PyG layer, loads its ``state_dict`` into the graphattn layer and
compares outputs and gradients (inputs and every parameter): 192 ``GraphAttnConv`` /
``TransformerConv`` configurations (heads, concat, beta, edge_dim, root_weight, bipartite; graphs
with isolated nodes, duplicate edges, a mixed-size batch) in float64 to 1e-10, a float32 subset to
1e-5, and 48 ``GPSLayer`` / ``GPSConv`` configurations (both attention types, every usable norm,
with and without ``batch``, train and eval) in float64.
"""
import itertools

import pytest
import torch
from torch_geometric.nn import GINEConv, GPSConv, TransformerConv

from graphattn.nn import GPSLayer, GraphAttnConv

F_IN, F_DST, F_EDGE = 6, 5, 4


def _graph(kind: str, bipartite: bool, gen: torch.Generator):
    """``(num_src, num_dst, edge_index)`` of one of the test graphs."""
    if kind == "isolated":            # destinations 9..11 have no in-edge
        n_src, n_dst = (14, 12) if bipartite else (12, 12)
        ei = torch.stack([torch.randint(0, n_src, (40,), generator=gen), torch.randint(0, 9, (40,), generator=gen)])
    elif kind == "duplicates":        # every edge twice, plus a triple self-loop
        n_src, n_dst = (9, 7) if bipartite else (8, 8)
        ei = torch.stack([torch.randint(0, n_src, (15,), generator=gen), torch.randint(0, n_dst, (15,), generator=gen)])
        ei = torch.cat([ei, ei, torch.tensor([[1, 1, 1], [1, 1, 1]])], 1)
    else:                             # a batch of graphs of 1, 5 and 11 nodes (block-diagonal edges)
        sizes = (1, 5, 11)
        n_src = n_dst = sum(sizes)
        parts, start = [], 0
        for n in sizes:
            parts.append(torch.randint(0, n, (2, 3 * n), generator=gen) + start)
            start += n
        ei = torch.cat(parts, 1)
        if bipartite:
            n_src += 3                # three extra sources that no edge reads
    return n_src, n_dst, ei


CONV_CONFIGS = list(itertools.product([1, 3], [True, False], [True, False], [None, F_EDGE], [True, False],
                                      [False, True], ["isolated", "duplicates", "batch"]))


@pytest.mark.parametrize("heads,concat,beta,edge_dim,root_weight,bipartite,kind", CONV_CONFIGS)
def test_graph_attn_conv_equals_transformer_conv(heads, concat, beta, edge_dim, root_weight, bipartite, kind):
    _compare_convs(torch.float64, 1e-10, heads, concat, beta, edge_dim, root_weight, bipartite, kind)


@pytest.mark.parametrize("heads,concat,beta,edge_dim,root_weight,bipartite,kind", CONV_CONFIGS[::8])
def test_graph_attn_conv_equals_transformer_conv_float32(heads, concat, beta, edge_dim, root_weight, bipartite, kind):
    _compare_convs(torch.float32, 1e-5, heads, concat, beta, edge_dim, root_weight, bipartite, kind)


def _compare_convs(dtype, tol, heads, concat, beta, edge_dim, root_weight, bipartite, kind):
    gen = torch.Generator().manual_seed(hash((heads, concat, beta, edge_dim, root_weight, bipartite, kind)) % 2 ** 31)
    n_src, n_dst, ei = _graph(kind, bipartite, gen)
    in_channels = (F_IN, F_DST) if bipartite else F_IN
    args = dict(heads=heads, concat=concat, beta=beta, edge_dim=edge_dim, root_weight=root_weight)
    ref = TransformerConv(in_channels, 3, **args).to(dtype)
    ours = GraphAttnConv(in_channels, 3, **args).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x_src = torch.randn(n_src, F_IN, dtype=dtype, generator=gen)
    x_dst = torch.randn(n_dst, F_DST, dtype=dtype, generator=gen) if bipartite else x_src
    ea = torch.randn(ei.size(1), F_EDGE, dtype=dtype, generator=gen) if edge_dim else None
    results = []
    for module in (ref, ours):
        inputs = [x_src.clone().requires_grad_()] + ([x_dst.clone().requires_grad_()] if bipartite else [])
        edge = None if ea is None else ea.clone().requires_grad_()
        x = (inputs[0], inputs[1]) if bipartite else inputs[0]
        out = module(x, ei, edge)
        grad_out = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        leaves = inputs + ([edge] if edge is not None else []) + list(module.parameters())
        results.append((out, torch.autograd.grad(out, leaves, grad_out, allow_unused=True)))
    (out_ref, grads_ref), (out, grads) = results
    torch.testing.assert_close(out, out_ref, atol=tol, rtol=tol)
    for a, b in zip(grads, grads_ref):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)


NORMS = [None, "batch_norm", "layer_norm", "instance_norm", "graph_norm", "pair_norm"]
GPS_CONFIGS = list(itertools.product(["multihead", "performer"], NORMS, [False, True], ["eval", "train"]))


def _gine(channels: int) -> torch.nn.Module:
    return GINEConv(torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.ReLU(),
                                        torch.nn.Linear(channels, channels)))


@pytest.mark.parametrize("attn_type,norm,with_batch,mode", GPS_CONFIGS)
def test_gps_layer_equals_gps_conv(attn_type, norm, with_batch, mode):
    """With PyG's defaults for every attention type (the performer's 64 head channels included).
    The performer runs on graphs of equal size when batched: on unequal sizes PyG's padded
    attention lets the padding enter the normaliser (see ``test_performer_on_unequal_graphs``)."""
    torch.manual_seed(0)
    c = 16
    sizes = [6, 6, 6] if attn_type == "performer" else [4, 9, 1]
    n = sum(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    starts = torch.tensor(sizes).cumsum(0) - torch.tensor(sizes)
    ei = torch.cat([torch.randint(0, s, (2, 2 * s)) + int(o) for s, o in zip(sizes, starts)], 1)   # within graphs
    x, ea = torch.randn(n, c, dtype=torch.double), torch.randn(ei.size(1), c, dtype=torch.double)
    ref = GPSConv(c, _gine(c), heads=4, norm=norm, attn_type=attn_type).double()
    ours = GPSLayer(c, _gine(c), heads=4, norm=norm, attn_type=attn_type).double()
    ours.load_state_dict(ref.state_dict())
    results = []
    for module in (ref, ours):
        module.train(mode == "train")
        xi = x.clone().requires_grad_()
        out = module(xi, ei, batch if with_batch else None, edge_attr=ea)
        grads = torch.autograd.grad(out.square().sum(), [xi] + list(module.parameters()), allow_unused=True)
        results.append((out, grads))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-10, rtol=1e-10)
    for a, b in zip(results[1][1], results[0][1]):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_performer_on_unequal_graphs_is_exact_per_graph_where_pyg_pads():
    """graphattn's performer attends within each graph exactly; PyG's pads every graph to the largest
    and the padded zero rows enter its key sums. On one graph alone both agree."""
    torch.manual_seed(0)
    c = 16
    ref = GPSConv(c, None, heads=2, attn_type="performer").double().eval()
    ours = GPSLayer(c, None, heads=2, attn_type="performer").double().eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(11, c, dtype=torch.double)
    batch = torch.tensor([0] * 3 + [1] * 8)
    small = ours(x[:3], None)
    torch.testing.assert_close(ours(x, None, batch)[:3], small)                 # per graph
    torch.testing.assert_close(ref(x[:3], None), small, atol=1e-10, rtol=1e-10)
    assert not torch.allclose(ref(x, None, batch)[:3], small, atol=1e-6)        # padding changes PyG's
