
import pytest
import torch
from torch_geometric.nn import GINEConv, GPSConv
from torch_geometric.nn.attention import PerformerAttention

from graphattn.nn import GPSLayer, LinearGraphAttention
from helpers import assert_grads_everywhere, assert_per_graph, permute, random_batch

C = 16


def _gine():
    return GINEConv(torch.nn.Sequential(torch.nn.Linear(C, C), torch.nn.ReLU(), torch.nn.Linear(C, C)))


@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm", None])
def test_matches_gpsconv_in_eval(norm):
    batch = random_batch([5, 1, 12, 3, 8], C, edge_dim=C)
    ref = GPSConv(C, _gine(), heads=4, dropout=0.1, norm=norm, attn_kwargs={"dropout": 0.2})
    ref.train()
    ref(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr)    # update BatchNorm statistics
    layer = GPSLayer(C, _gine(), heads=4, dropout=0.1, norm=norm, attn_kwargs={"dropout": 0.2})
    layer.load_state_dict(ref.state_dict())
    ref.eval(), layer.eval()
    out_ref = ref(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr)
    out = layer(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)


def _dense_linear_attention(attn: LinearGraphAttention, x):
    """Reference: PyG's PerformerAttention / elu+1 attention on one graph, dense."""
    n, h = x.size(0), attn.heads
    q, k, v = (lin(x).view(n, h, -1).transpose(0, 1) for lin in (attn.q, attn.k, attn.v))
    if attn.kernel == "elu":
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    else:
        mat = attn.fast_attn.projection_matrix.to(x.dtype)
        q, k = torch.relu(q @ mat.t()) + 1e-3, torch.relu(k @ mat.t()) + 1e-3
    scores = q @ k.transpose(1, 2)
    out = (scores / scores.sum(-1, keepdim=True)) @ v
    return attn.attn_out(out.transpose(0, 1).reshape(n, -1))


@pytest.mark.parametrize("kernel", ["performer", "elu"])
def test_linear_attention_per_graph_dense_reference(kernel):
    attn = LinearGraphAttention(C, 2, head_channels=6, kernel=kernel).double()
    batch = random_batch([4, 9, 1], C, dtype=torch.double)
    out = attn(batch.x, batch.batch)
    for g in range(3):
        x = batch.x[batch.batch == g]
        torch.testing.assert_close(out[batch.batch == g], _dense_linear_attention(attn, x))


def test_performer_loads_pyg_state_dict():
    ref = PerformerAttention(C, heads=2, head_channels=8)
    attn = LinearGraphAttention(C, 2, head_channels=8)
    attn.load_state_dict(ref.state_dict())
    x = torch.randn(7, C)
    torch.testing.assert_close(attn(x), ref(x.unsqueeze(0))[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_type", ["multihead", "performer", "linear"])
def test_per_graph_permutation_gradients(attn_type):
    layer = GPSLayer(C, _gine(), heads=2, attn_type=attn_type, attn_kwargs={"dropout": 0.1}).eval()
    batch = random_batch([6, 1, 9, 4], C, edge_dim=C)
    assert_per_graph(lambda b: layer(b.x, b.edge_index, b.batch, edge_attr=b.edge_attr), batch)
    data = batch.to_data_list()[2]
    perm = torch.randperm(data.num_nodes)
    p = permute(data, perm)
    torch.testing.assert_close(layer(data.x, data.edge_index, edge_attr=data.edge_attr)[perm],
                               layer(p.x, p.edge_index, edge_attr=p.edge_attr), atol=1e-5, rtol=1e-4)
    layer.train()
    layer(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr).square().sum().backward()
    assert_grads_everywhere(layer)


def test_bad_arguments():
    with pytest.raises(ValueError, match="attn_type"):
        GPSLayer(C, None, attn_type="flash")
    with pytest.raises(ValueError, match="attn_kwargs"):
        GPSLayer(C, None, attn_kwargs={"kdim": 3})
    with pytest.raises(ValueError, match="divisible"):
        GPSLayer(C, None, heads=3)
    with pytest.raises(ValueError, match="x must"):
        GPSLayer(C, None)(torch.randn(3, C + 1), None)
