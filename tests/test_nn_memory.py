"""No layer forms per-edge keys or messages: every tensor produced during forward and backward is
recorded (a TorchDispatchMode sees the outputs of every aten op and engine op). Without edge
features no tensor comes near E*H*D elements; with edge features the only E x H x D allocations are
the projected edge features W_e e_ij themselves and their gradient (PyG's TransformerConv allocates
more than ten). GATConv folds its edge projection into the attention vector (an [E, H] score term), so it
stays below E*H*D with edge features too; GATv2Conv likewise without edge features, and with them forms
only its edge_k W_e e_ij and the gradient of it (PyG's GAT layers allocate 5 to 15 each). The engine's own
chunk size is made small so that its chunked temporaries (inside the custom ops, invisible here anyway)
cannot hide anything."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch_geometric.nn import GATConv as PyGGATConv
from torch_geometric.nn import GATv2Conv as PyGGATv2Conv
from torch_geometric.nn import TransformerConv

import sparse_kernels.reference as reference
from graphattn.nn import GATConv, GATv2Conv, GINAttention, GraphAttnConv, PNAAttention
from graphattn.nn import _edge_ops

N, E, H, D, F = 40, 3000, 4, 16, 3


class _TensorLog(TorchDispatchMode):
    """The largest tensor produced, and the number of op outputs of at least E*H*D elements that are
    new tensors (not views: their schema return has no alias annotation)."""

    def __init__(self):
        super().__init__()
        self.largest, self.big_allocations = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        for i, t in enumerate(tree_leaves(out)):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
                is_view = i < len(returns) and returns[i].alias_info is not None
                self.big_allocations += t.numel() >= E * H * D and not is_view
        return out


def _log(fn) -> _TensorLog:
    mode = _TensorLog()
    with mode:
        fn().square().sum().backward()
    return mode


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 4096)
    monkeypatch.setattr(_edge_ops, "_edge_chunk", lambda heads, channels: 64)


def _inputs():
    return torch.randn(N, H * D), torch.randint(0, N, (2, E)), torch.randn(E, F)


def test_pyg_transformer_conv_forms_many():
    x, ei, ea = _inputs()
    assert _log(lambda: TransformerConv(H * D, D, heads=H, edge_dim=F)(x, ei, ea)).big_allocations >= 10


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_graph_attn_conv_forms_only_the_edge_projection(dropout, small_chunks):
    x, ei, ea = _inputs()
    module = GraphAttnConv(H * D, D, heads=H, edge_dim=F, dropout=dropout)
    # W_e e_ij, the gradients it gets as edge_k and as edge_v, and their sum
    assert _log(lambda: module(x, ei, ea)).big_allocations <= 4


@pytest.mark.parametrize("layer", [
    lambda: GraphAttnConv(H * D, D, heads=H),
    lambda: GraphAttnConv(H * D, D, heads=H, dropout=0.1),
    lambda: GINAttention(H * D, heads=H),
    lambda: PNAAttention(H * D, heads=H),
])
def test_layers_stay_below_e_h_d(layer, small_chunks):
    x, ei, _ = _inputs()
    module = layer()
    assert _log(lambda: module(x, ei)).largest < E * H * D // 4


def _gat_inputs():
    """Inputs without self-loops, so that the GAT layers' graphs (self-loops added) have E + N edges."""
    x, ei, ea = _inputs()
    ei[1] = torch.where(ei[0] == ei[1], (ei[1] + 1) % N, ei[1])
    return x, ei, ea


@pytest.mark.parametrize("make", [
    lambda: PyGGATConv(H * D, D, heads=H),
    lambda: PyGGATConv(H * D, D, heads=H, edge_dim=F),
    lambda: PyGGATv2Conv(H * D, D, heads=H),
    lambda: PyGGATv2Conv(H * D, D, heads=H, edge_dim=F),
])
def test_pyg_gat_layers_form_e_h_d(make):
    x, ei, ea = _gat_inputs()
    module = make()
    assert _log(lambda: module(x, ei, ea if module.edge_dim else None)).big_allocations >= 5


@pytest.mark.parametrize("make", [
    lambda: GATConv(H * D, D, heads=H),
    lambda: GATConv(H * D, D, heads=H, dropout=0.1),
    lambda: GATConv(H * D, D, heads=H, edge_dim=F, dropout=0.1),
    lambda: GATConv(H * D, D, heads=H, edge_dim=F, fill_value="max", residual=True),
    lambda: GATv2Conv(H * D, D, heads=H),
    lambda: GATv2Conv(H * D, D, heads=H, dropout=0.1, share_weights=True),
])
def test_gat_layers_stay_below_e_h_d(make, small_chunks):
    x, ei, ea = _gat_inputs()
    module = make().train()
    assert _log(lambda: module(x, ei, ea if module.edge_dim else None)).largest < E * H * D // 4


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gatv2_conv_with_edge_features_forms_only_the_edge_projection(dropout, small_chunks):
    x, ei, ea = _gat_inputs()
    module = GATv2Conv(H * D, D, heads=H, edge_dim=F, dropout=dropout)
    assert _log(lambda: module(x, ei, ea)).big_allocations <= 2        # W_e e_ij (the edge_k) and its gradient
