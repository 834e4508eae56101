import pytest
import torch
from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims
from torch_geometric.data import Batch, Data

from graphattn.data.positional import AddLapPE, AddRWSE
from graphattn.data.virtual_node import AddVirtualNode
from graphattn.models import GPS, GraphTransformer, MPNNVirtualNode, model_inputs
from test_nn_common import assert_grads_everywhere, permute

C = 16


def _molecule(n: int) -> Data:
    """Random OGB-format molecule: integer atom [n, 9] and bond [E, 3] categories, both directions."""
    atom, bond = get_atom_feature_dims(), get_bond_feature_dims()
    x = torch.stack([torch.randint(0, d, (n,)) for d in atom], 1)
    src = torch.randint(0, n, (2 * n,))
    dst = torch.randint(0, n, (2 * n,))
    keep = src != dst
    src, dst = src[keep], dst[keep]
    ea = torch.stack([torch.randint(0, d, (src.numel(),)) for d in bond], 1)
    data = Data(x=x, edge_index=torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1),
                edge_attr=torch.cat([ea, ea]), num_nodes=n)
    return AddRWSE(4)(AddLapPE(3)(data))


def _batch(sizes=(5, 1, 8, 3)):
    return Batch.from_data_list([_molecule(n) for n in sizes])


MODELS = {
    "gps_gine": lambda **kw: GPS(C, 2, num_layers=2, heads=2, local_conv="gine", lap_pe_dim=3, rwse_dim=4, **kw),
    "gps_gatedgcn_performer": lambda **kw: GPS(C, 2, num_layers=2, heads=2, local_conv="gatedgcn",
                                               attn_type="performer", rwse_dim=4, **kw),
    "gps_gcn_linear": lambda **kw: GPS(C, 2, num_layers=2, heads=2, local_conv="gcn", attn_type="linear", **kw),
    "gt_edges": lambda **kw: GraphTransformer(C, 2, num_layers=2, heads=2, lap_pe_dim=3, clamp=5.0, **kw),
    "gt_no_edges": lambda **kw: GraphTransformer(C, 2, num_layers=2, heads=2, edge_encoder=None, **kw),
    "vn_gine": lambda **kw: MPNNVirtualNode(C, 2, num_layers=3, local_conv="gine", num_virtual_nodes=2, **kw),
    "vn_gatedgcn": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gatedgcn", **kw),
    "vn_gcn": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gcn", rwse_dim=4, **kw),
    "mpnn_no_vn": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gine", num_virtual_nodes=0, **kw),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_per_graph_permutation_gradients(name):
    model = MODELS[name](dropout=0.1, head_layers=2)
    batch = _batch()
    model.train()
    out = model(**model_inputs(batch))
    assert out.shape == (4, 2)
    out.square().sum().backward()
    assert_grads_everywhere(model)
    model.eval()
    with torch.no_grad():
        full = model(**model_inputs(batch))
        for g, data in enumerate(batch.to_data_list()):
            alone = model(**model_inputs(Batch.from_data_list([data])))
            torch.testing.assert_close(full[g:g + 1], alone, atol=1e-5, rtol=1e-4)
        data = batch.to_data_list()[2]
        perm = torch.randperm(data.num_nodes)
        torch.testing.assert_close(model(**model_inputs(Batch.from_data_list([permute(data, perm)]))),
                                   full[2:3], atol=1e-5, rtol=1e-4)


def test_node_level_head_and_virtual_node_transform():
    model = GPS(C, 3, num_layers=1, heads=2, level="node", head_layers=3, extra_categories=1).eval()
    batch = Batch.from_data_list([AddVirtualNode()(_molecule(n)) for n in (4, 6)])
    out = model(**model_inputs(batch))
    assert out.shape == (batch.num_nodes, 3) and torch.isfinite(out).all()
    graph_model = MPNNVirtualNode(C, 1, num_layers=2, extra_categories=1, pool="sum").eval()
    pooled = graph_model(**model_inputs(batch))
    assert pooled.shape == (2, 1)
    plain = _batch((3, 4))
    with pytest.raises(ValueError, match="lap_pe"):
        GraphTransformer(C, 1, lap_pe_dim=3)(plain.x, plain.edge_index, plain.edge_attr)


def test_compiled_gps_forward_backward_cpu():
    """torch.compile(fullgraph=True) of a small GPS model, forward and backward, equal to eager."""
    model = GPS(C, 1, num_layers=1, heads=2, local_conv="gine").eval()
    inputs = model_inputs(_batch((4, 6, 3)))
    del inputs["lap_pe"], inputs["rwse"]
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(**inputs)
    torch.testing.assert_close(out, model(**inputs), atol=1e-5, rtol=1e-4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_smoke_one_step_on_embedded_molesol():
    from graphattn.data import load_dataset
    from torch_geometric.loader import DataLoader
    bench = load_dataset("ogbg-molesol")
    batch = next(iter(DataLoader(bench.dataset[bench.split["train"]][:32], batch_size=32)))
    model = MPNNVirtualNode(C, bench.num_tasks, num_layers=2)
    loss = torch.nn.functional.mse_loss(model(**model_inputs(batch)), batch.y)
    loss.backward()
    assert torch.isfinite(loss)
