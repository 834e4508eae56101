import pytest
import torch
from torch_geometric.nn import TransformerConv
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

from graphattn import AttentionGraph
from graphattn.nn import GraphAttnConv
from helpers import assert_grads_everywhere, assert_per_graph, permute, random_batch, random_data


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("beta", [True, False])
@pytest.mark.parametrize("edge_dim", [None, 3])
def test_matches_transformer_conv(heads, concat, beta, edge_dim):
    data = random_data(13, 50, 7, edge_dim)
    ref = TransformerConv(7, 5, heads=heads, concat=concat, beta=beta, edge_dim=edge_dim).eval()
    conv = GraphAttnConv(7, 5, heads=heads, concat=concat, beta=beta, edge_dim=edge_dim).eval()
    conv.load_state_dict(ref.state_dict())
    out_ref, (ei_ref, alpha_ref) = ref(data.x, data.edge_index, data.edge_attr, return_attention_weights=True)
    out, (ei, alpha) = conv(data.x, data.edge_index, data.edge_attr, return_attention_weights=True)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(alpha, alpha_ref, atol=1e-5, rtol=0)
    assert torch.equal(ei, ei_ref)
    torch.testing.assert_close(conv(data.x, data.edge_index, data.edge_attr), out_ref, atol=1e-5, rtol=0)


def test_bipartite_float64_and_lazy():
    x_src, x_dst = torch.randn(6, 4, dtype=torch.double), torch.randn(3, 5, dtype=torch.double)
    edge_index = torch.tensor([[0, 1, 5, 2, 2, 4], [0, 0, 1, 1, 2, 2]])
    ea = torch.randn(6, 2, dtype=torch.double)
    ref = TransformerConv((4, 5), 3, heads=2, edge_dim=2, beta=True).double().eval()
    conv = GraphAttnConv((4, 5), 3, heads=2, edge_dim=2, beta=True).double().eval()
    conv.load_state_dict(ref.state_dict())
    torch.testing.assert_close(conv((x_src, x_dst), edge_index, ea), ref((x_src, x_dst), edge_index, ea))
    lazy = GraphAttnConv(-1, 3, heads=2)
    assert lazy((x_src.float(), x_dst.float()), edge_index).shape == (3, 6)


def test_sparse_adjacency_and_attention_graph():
    data = random_data(9, 30, 4, 2)
    conv = GraphAttnConv(4, 3, heads=2, edge_dim=2).eval()
    out = conv(data.x, data.edge_index, data.edge_attr)
    graph = AttentionGraph(data.edge_index, 9)
    torch.testing.assert_close(conv(data.x, graph, data.edge_attr), out)
    ei = torch.unique(data.edge_index, dim=1)
    ref = TransformerConv(4, 3, heads=2).eval()
    plain = GraphAttnConv(4, 3, heads=2).eval()
    plain.load_state_dict(ref.state_dict())
    for adj in (to_torch_csr_tensor(ei.flip(0), size=(9, 9)), to_torch_coo_tensor(ei.flip(0), size=(9, 9))):
        out_ref, (adj_ref, alpha_ref) = ref(data.x, adj, return_attention_weights=True)
        out, (adj_out, alpha) = plain(data.x, adj, return_attention_weights=True)
        torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(alpha, alpha_ref, atol=1e-5, rtol=0)
        assert adj_out is adj


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("root_weight", [True, False])
def test_bias_and_root_weight_options(bias, root_weight):
    data = random_data(8, 20, 5, 2)
    ref = TransformerConv(5, 3, heads=2, beta=True, bias=bias, root_weight=root_weight, edge_dim=2).eval()
    conv = GraphAttnConv(5, 3, heads=2, beta=True, bias=bias, root_weight=root_weight, edge_dim=2).eval()
    conv.load_state_dict(ref.state_dict())
    torch.testing.assert_close(conv(data.x, data.edge_index, data.edge_attr),
                               ref(data.x, data.edge_index, data.edge_attr), atol=1e-5, rtol=0)


def test_per_graph_permutation_and_gradients():
    conv = GraphAttnConv(6, 4, heads=3, edge_dim=2, beta=True).eval()
    batch = random_batch([4, 1, 7, 0, 5], 6, edge_dim=2)
    assert_per_graph(lambda b: conv(b.x, b.edge_index, b.edge_attr), batch)
    data = random_data(10, 40, 6, 2)
    perm = torch.randperm(10)
    torch.testing.assert_close(conv(data.x, data.edge_index, data.edge_attr)[perm],
                               conv(*(lambda d: (d.x, d.edge_index, d.edge_attr))(permute(data, perm))))
    conv.train()
    conv.dropout = 0.2
    conv(data.x, data.edge_index, data.edge_attr).square().sum().backward()
    assert_grads_everywhere(conv)


def test_isolated_nodes_no_nan_and_bad_input():
    conv = GraphAttnConv(4, 2, heads=2, edge_dim=3)
    x = torch.randn(5, 4)
    out = conv(x, torch.tensor([[0, 1], [1, 1]]), torch.randn(2, 3))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="edge_attr"):
        conv(x, torch.tensor([[0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="edge_attr"):
        conv(x, torch.tensor([[0, 1], [1, 1]]), torch.randn(3, 3))
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, torch.tensor([[0, 9], [1, 1]]), torch.randn(2, 3))
