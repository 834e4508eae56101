import re

import pytest
import torch
from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims
from torch_geometric.data import Batch, Data

from graphattn.data.positional import AddLapPE, AddRWSE
from graphattn.data.virtual_node import AddVirtualNode
from graphattn.models import GPS, GraphTransformer, LocalConv, MPNNVirtualNode, PredictionHead, model_inputs
from graphattn.nn import GatedGCNLayer
from helpers import assert_grads_everywhere, permute

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
    "gps_gatedgcn_san_head": lambda **kw: GPS(C, 2, num_layers=2, heads=2, local_conv="gatedgcn",
                                              head_style="san_graph", rwse_dim=4, rwse_concat_dim=4, **kw),
    "gps_resgatedgcn": lambda **kw: GPS(C, 2, num_layers=2, heads=2, local_conv="resgatedgcn", **kw),
    "gps_gcn_linear": lambda **kw: GPS(C, 2, num_layers=2, heads=2, local_conv="gcn", attn_type="linear", **kw),
    "gt_edges": lambda **kw: GraphTransformer(C, 2, num_layers=2, heads=2, lap_pe_dim=3, clamp=5.0, **kw),
    "gt_no_edges": lambda **kw: GraphTransformer(C, 2, num_layers=2, heads=2, edge_encoder=None, **kw),
    "vn_gine": lambda **kw: MPNNVirtualNode(C, 2, num_layers=3, local_conv="gine", num_virtual_nodes=2, **kw),
    "vn_gatedgcn": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gatedgcn", **kw),
    "vn_gcn": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gcn", rwse_dim=4, **kw),
    "mpnn_no_vn": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gine", num_virtual_nodes=0, **kw),
    "vn_gin_ogb": lambda **kw: MPNNVirtualNode(C, 2, num_layers=3, local_conv="gin", residual=False,
                                               edge_encoder_per_layer=True, vn_hidden_factor=2, vn_residual=False,
                                               **kw),
    "graphgps_gcn_gelu": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gcn", num_virtual_nodes=0,
                                                      block="graphgps", act="gelu", head_style="mlp_graph", **kw),
    "graphgps_gine": lambda **kw: MPNNVirtualNode(C, 2, num_layers=2, local_conv="gine", num_virtual_nodes=0,
                                                  block="graphgps", act="gelu", **kw),
}


def _unused_last_edge_update(model):
    """Parameters with no gradient by design: the edge features the last GatedGCN layer computes
    are not read (as in GraphGPS)."""
    convs = [m for m in model.modules() if isinstance(m, LocalConv) and m.updates_edges]
    return {p for p in convs[-1].conv.bn_edge_e.parameters()} if convs else set()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_per_graph_permutation_gradients(name):
    model = MODELS[name](dropout=0.1, head_layers=2)
    for p in _unused_last_edge_update(model):
        p.requires_grad_(False)
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
    """torch.compile(fullgraph=True) of a small GPS model, forward and backward, equal to eager (GatedGCN:
    edge features passed from layer to layer)."""
    model = GPS(C, 1, num_layers=2, heads=2, local_conv="gatedgcn").eval()
    inputs = model_inputs(_batch((4, 6, 3)))
    del inputs["lap_pe"], inputs["rwse"]
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(**inputs)
    torch.testing.assert_close(out, model(**inputs), atol=1e-5, rtol=1e-4)
    out.sum().backward()
    unused = _unused_last_edge_update(model)
    assert all(p.grad is not None for p in model.parameters() if p not in unused)


def test_smoke_one_step_on_embedded_molesol():
    from graphattn.data import load_dataset
    from torch_geometric.loader import DataLoader
    bench = load_dataset("ogbg-molesol")
    batch = next(iter(DataLoader(bench.dataset[bench.split["train"]][:32], batch_size=32)))
    model = MPNNVirtualNode(C, bench.num_tasks, num_layers=2)
    loss = torch.nn.functional.mse_loss(model(**model_inputs(batch)), batch.y)
    loss.backward()
    assert torch.isfinite(loss)


def _conv_inputs(model):
    """Records ``(x, edge_attr)`` as each LocalConv of ``model`` receives them."""
    seen = []
    for module in model.modules():
        if isinstance(module, LocalConv):
            module.register_forward_pre_hook(lambda m, args, kwargs: seen.append(
                (args[0], kwargs.get("edge_attr", args[2] if len(args) > 2 else None))), with_kwargs=True)
    return seen


@pytest.mark.parametrize("kind", ["gps", "mpnn"])
def test_gatedgcn_threads_updated_edges_as_graphgps(kind):
    """Each layer gets the previous layer's edges e + ReLU(BN(e_hat)); GPS's local branch is
    Norm1(GraphGPS's GatedGCN with residual), the MPNN layer is GraphGPS's GatedGCN itself."""
    if kind == "gps":
        model = GPS(C, 1, num_layers=2, heads=2, local_conv="gatedgcn", dropout=0.3)
        for layer in model.layers:
            layer.attn = None
    else:
        model = MPNNVirtualNode(C, 1, num_layers=2, local_conv="gatedgcn", num_virtual_nodes=0, dropout=0.3,
                                block="graphgps")
    model = model.double().eval()
    seen = _conv_inputs(model)
    batch = _batch()
    model(**model_inputs(batch))
    (x0, e0), (x1, e1) = seen
    first = model.layers[0].conv.conv if kind == "gps" else model.convs[0].conv
    graphgps = GatedGCNLayer(C, C, dropout=0.3, residual=True).double().eval()
    graphgps.load_state_dict(first.state_dict())
    x_ref, e_ref = graphgps(x0, batch.edge_index, e0)
    torch.testing.assert_close(e1, e_ref)
    if kind == "gps":
        layer = model.layers[0]
        h = layer.norm1(x_ref) + layer.norm2(x0)
        x_ref = layer.norm3(h + layer.mlp(h))
    torch.testing.assert_close(x1, x_ref)


def test_options_are_checked():
    with pytest.raises(ValueError, match="block"):
        MPNNVirtualNode(C, 1, block="pyg")
    for conv in ("gatedgcn", "gcn"):
        with pytest.raises(ValueError, match="edge_encoder_per_layer"):
            MPNNVirtualNode(C, 1, local_conv=conv, edge_encoder_per_layer=True)
    with pytest.raises(ValueError, match="style"):
        GPS(C, 1, head_style="deep")
    with pytest.raises(ValueError, match="halves"):
        GPS(4, 1, head_layers=4, head_style="san_graph")
    with pytest.raises(ValueError, match="local conv"):
        LocalConv("gat", C)


class _OGBGinVirtual(torch.nn.Module):
    """Stand-in for OGB's ``GNN(gnn_type='gin', virtual_node=True)`` (examples/graphproppred/mol: JK last,
    mean pooling, linear head; residual False) with OGB's parameter layout, written out in plain torch."""

    def __init__(self, emb, num_layers, num_tasks, drop):
        super().__init__()
        self.drop = drop
        self.atom_encoder = torch.nn.ModuleList(torch.nn.Embedding(d, emb) for d in get_atom_feature_dims())
        self.convs = torch.nn.ModuleList()
        for _ in range(num_layers):
            conv = torch.nn.Module()
            conv.mlp = torch.nn.Sequential(torch.nn.Linear(emb, 2 * emb), torch.nn.BatchNorm1d(2 * emb),
                                           torch.nn.ReLU(), torch.nn.Linear(2 * emb, emb))
            conv.eps = torch.nn.Parameter(torch.zeros(1))
            conv.bond_encoder = torch.nn.ModuleList(torch.nn.Embedding(d, emb) for d in get_bond_feature_dims())
            self.convs.append(conv)
        self.batch_norms = torch.nn.ModuleList(torch.nn.BatchNorm1d(emb) for _ in range(num_layers))
        self.virtualnode_embedding = torch.nn.Embedding(1, emb)
        torch.nn.init.zeros_(self.virtualnode_embedding.weight)
        self.mlp_virtualnode_list = torch.nn.ModuleList(torch.nn.Sequential(
            torch.nn.Linear(emb, 2 * emb), torch.nn.BatchNorm1d(2 * emb), torch.nn.ReLU(),
            torch.nn.Linear(2 * emb, emb), torch.nn.BatchNorm1d(emb), torch.nn.ReLU()) for _ in range(num_layers - 1))
        self.graph_pred_linear = torch.nn.Linear(emb, num_tasks)

    def forward(self, data):
        drop = lambda t: torch.nn.functional.dropout(t, self.drop, self.training)   # noqa: E731
        src, dst = data.edge_index
        h = sum(emb(data.x[:, k]) for k, emb in enumerate(self.atom_encoder))
        vn = self.virtualnode_embedding(torch.zeros(data.num_graphs, dtype=torch.long))
        last = len(self.convs) - 1
        for layer, conv in enumerate(self.convs):
            h_in = h + vn[data.batch]
            bond = sum(emb(data.edge_attr[:, k]) for k, emb in enumerate(conv.bond_encoder))
            messages = torch.relu(h_in[src] + bond)
            h = conv.mlp((1 + conv.eps) * h_in + torch.zeros_like(h_in).index_add(0, dst, messages))
            h = self.batch_norms[layer](h)
            h = drop(h) if layer == last else drop(torch.relu(h))
            if layer < last:
                pooled = torch.zeros_like(vn).index_add(0, data.batch, h_in)
                vn = drop(self.mlp_virtualnode_list[layer](pooled + vn))
        counts = torch.zeros(data.num_graphs, 1).index_add(0, data.batch, torch.ones(h.size(0), 1))
        return self.graph_pred_linear(torch.zeros_like(vn).index_add(0, data.batch, h) / counts)


_OGB_NAMES = [(r"^encoder\.node\.embeddings\.", "atom_encoder."),
              (r"^edge_encoders\.(\d+)\.edge\.embeddings\.", r"convs.\1.bond_encoder."),
              (r"^convs\.(\d+)\.conv\.nn\.", r"convs.\1.mlp."), (r"^convs\.(\d+)\.conv\.eps$", r"convs.\1.eps"),
              (r"^norms\.", "batch_norms."), (r"^virtual_node_embedding$", "virtualnode_embedding.weight"),
              (r"^virtual_nodes\.(\d+)\.mlps\.0\.", r"mlp_virtualnode_list.\1."),
              (r"^head\.mlp\.0\.", "graph_pred_linear.")]


@pytest.mark.parametrize("training", [True, False])
def test_gin_virtual_equals_ogbs_model(training):
    """MPNNVirtualNode with OGB's gin-virtual options computes OGB's model (weights loaded by name)."""
    drop = 0.0 if training else 0.5       # dropout masks are random: compare train mode without it
    ogb = _OGBGinVirtual(C, 3, 2, drop).double()
    ours = MPNNVirtualNode(C, 2, num_layers=3, local_conv="gin", residual=False, dropout=drop,
                           edge_encoder_per_layer=True, vn_hidden_factor=2, vn_residual=False).double()
    with torch.no_grad():
        for name, value in ogb.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in name else torch.randn_like(value))
    theirs = ogb.state_dict()
    renamed = {}
    for name in ours.state_dict():
        source = name
        for pattern, repl in _OGB_NAMES:
            source = re.sub(pattern, repl, source)
        renamed[name] = theirs[source].view_as(ours.state_dict()[name])
    assert len(renamed) == len(theirs)
    ours.load_state_dict(renamed)
    ogb.train(training), ours.train(training)
    batch = _batch()
    torch.testing.assert_close(ours(**model_inputs(batch)), ogb(batch))


def test_gin_vn_molhiv_config_trains_on_real_molecules():
    """The shipped OGB gin-virtual (3.3M parameters) on 32 molecules of the embedded ogbg-molesol."""
    from torch_geometric.loader import DataLoader

    from graphattn.config import load_config
    from graphattn.data import load_dataset
    from graphattn.train_cli import build_model
    bench = load_dataset("ogbg-molesol")
    batch = next(iter(DataLoader(bench.dataset[bench.split["train"]][:32], batch_size=32)))
    model = build_model(load_config("gin-vn-molhiv"), bench.num_tasks).train()
    loss = torch.nn.functional.mse_loss(model(**model_inputs(batch)), batch.y)
    loss.backward()
    assert torch.isfinite(loss)
    assert_grads_everywhere(model)


def test_rwse_concatenated_as_graphgps():
    """rwse_concat_dim: [atom embedding (C - d) || Linear(BN(rwse)) (d)]."""
    model = MPNNVirtualNode(C, 1, num_layers=1, rwse_dim=4, rwse_concat_dim=6).train()
    batch = _batch()
    enc = model.encoder
    h = enc(batch.x, None, batch.rwse)
    assert enc.node(batch.x).shape[1] == C - 6 and h.shape == (batch.num_nodes, C)
    torch.testing.assert_close(h, torch.cat([enc.node(batch.x), enc.rwse(enc.rwse_norm(batch.rwse))], 1))
    with pytest.raises(ValueError, match="rwse_concat_dim"):
        MPNNVirtualNode(C, 1, rwse_concat_dim=6)


def test_head_styles():
    h, batch = torch.randn(9, C), torch.tensor([0] * 4 + [1] * 5)
    san = PredictionHead(C, 2, num_layers=3, style="san_graph", dropout=0.5).train()
    assert [m.out_features for m in san.mlp if isinstance(m, torch.nn.Linear)] == [C // 2, C // 4, 2]
    assert not any(isinstance(m, torch.nn.Dropout) for m in san.mlp)
    gym = PredictionHead(C, 2, num_layers=3, style="mlp_graph", act="gelu", dropout=0.1)
    assert [type(m).__name__ for m in gym.mlp] == ["Dropout", "Linear", "GELU", "Dropout", "Linear", "GELU",
                                                   "Dropout", "Linear"]
    assert san(h, batch, 2).shape == gym(h, batch, 2).shape == (2, 2)


def test_virtual_node_start_is_learned():
    """OGB's virtual node embedding: zero at start, a parameter that training moves."""
    model = MPNNVirtualNode(C, 1, num_layers=2, num_virtual_nodes=2)
    assert model.virtual_node_embedding.shape == (2, C) and not model.virtual_node_embedding.any()
    model(**model_inputs(_batch())).sum().backward()
    assert model.virtual_node_embedding.grad.abs().sum() > 0
