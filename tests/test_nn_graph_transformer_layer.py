import pytest
import torch

from graphattn.nn import GraphTransformerLayer
from helpers import assert_grads_everywhere, assert_per_graph, permute, random_batch, random_data


def _reference(layer: GraphTransformerLayer, x, edge_index, edge_attr=None):
    """The official graph_transformer_edge_layer equations, edge by edge, in plain PyTorch."""
    n, H = x.size(0), layer.heads
    d = x.size(1) // H
    src, dst = edge_index
    q, k, v = (lin(x).view(n, H, d) for lin in (layer.Q, layer.K, layer.V))
    score = k[src] * q[dst] / d ** 0.5                                        # [E, H, d]
    if edge_attr is not None:
        score = score * layer.E(edge_attr).view(-1, H, d)
    s = score.sum(-1)
    if layer.clamp is not None:
        w = torch.exp(s.clamp(-layer.clamp, layer.clamp))
        z = torch.zeros(n, H, dtype=x.dtype).index_add(0, dst, w)
        wv = torch.zeros(n, H, d, dtype=x.dtype).index_add(0, dst, w[..., None] * v[src])
        h = wv / (z[..., None] + 1e-6)
    else:
        a = torch.zeros(len(src), H, dtype=x.dtype)
        for i in range(n):
            m = dst == i
            if m.any():
                a[m] = torch.softmax(s[m], dim=0)
        h = torch.zeros(n, H, d, dtype=x.dtype).index_add(0, dst, a[..., None] * v[src])

    def post(h_in, h, out, n1, ffn, n2):
        h = n1(h_in + out(h))
        return n2(h + ffn(h))
    h = post(x, h.reshape(n, -1), layer.O_h, layer.norm1_h, layer.ffn_h, layer.norm2_h)
    if edge_attr is None:
        return h
    return h, post(edge_attr, score.reshape(len(src), -1), layer.O_e, layer.norm1_e, layer.ffn_e, layer.norm2_e)


@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("clamp", [None, 5.0])
@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
def test_matches_reference_float64(edges, clamp, norm):
    C = 12
    layer = GraphTransformerLayer(C, heads=3, edge_dim=C if edges else None, clamp=clamp, norm=norm).double()
    data = random_data(11, 40, C, C if edges else None, dtype=torch.double)
    data.edge_index[:, :3] = torch.tensor([[0, 1, 2], [0, 0, 0]])           # a row with several edges
    data.x = data.x * 3                                                     # scores beyond the clamp
    layer.train()
    layer(data.x, data.edge_index, data.edge_attr) if edges else layer(data.x, data.edge_index)   # BN stats
    layer.eval()
    out = layer(data.x, data.edge_index, data.edge_attr) if edges else layer(data.x, data.edge_index)
    ref = _reference(layer, data.x, data.edge_index, data.edge_attr if edges else None)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("edges", [False, True])
def test_per_graph_permutation_gradients(edges):
    C = 8
    layer = GraphTransformerLayer(C, heads=2, edge_dim=C if edges else None, clamp=5.0, dropout=0.1).eval()
    batch = random_batch([5, 1, 8, 3], C, C if edges else None)
    node_out = (lambda b: layer(b.x, b.edge_index, b.edge_attr)[0]) if edges else (lambda b: layer(b.x, b.edge_index))
    assert_per_graph(node_out, batch)
    data = batch.to_data_list()[2]
    perm = torch.randperm(data.num_nodes)
    torch.testing.assert_close(node_out(data)[perm], node_out(permute(data, perm)), atol=1e-5, rtol=1e-4)
    layer.train()
    out = layer(batch.x, batch.edge_index, batch.edge_attr) if edges else (layer(batch.x, batch.edge_index),)
    sum(o.square().sum() for o in out).backward()
    assert_grads_everywhere(layer)


def test_isolated_node_and_bad_input():
    layer = GraphTransformerLayer(4, heads=2, clamp=5.0, norm="layer_norm")
    out = layer(torch.randn(4, 4), torch.tensor([[0, 1], [1, 1]]))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divisible"):
        GraphTransformerLayer(5, heads=2)
    with pytest.raises(ValueError, match="edge_attr"):
        GraphTransformerLayer(4, heads=2, edge_dim=4)(torch.randn(3, 4), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="norm"):
        GraphTransformerLayer(4, heads=2, norm="graph_norm")
