"""No layer forms an E x H x D tensor: every tensor produced during forward and backward is recorded
(a TorchDispatchMode sees the outputs of every aten op and engine op) and must stay well below
E*H*D elements. The engine's own chunk size is made small so that its chunked temporaries (inside
the custom ops, invisible here anyway) cannot hide anything."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch_geometric.nn import TransformerConv

import sparse_kernels.reference as reference
from graphattn.nn import GINAttention, GraphAttnConv, PNAAttention
from graphattn.nn import _edge_ops

N, E, H, D, F = 40, 3000, 4, 16, 3


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest(fn):
    mode = _LargestTensor()
    with mode:
        fn().square().sum().backward()
    return mode.largest


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 4096)
    monkeypatch.setattr(_edge_ops, "_edge_chunk", lambda heads, channels: 64)
    monkeypatch.setattr(_edge_ops, "DIRECT_ELEMENTS", 0)


def _inputs():
    return torch.randn(N, H * D), torch.randint(0, N, (2, E)), torch.randn(E, F)


def test_pyg_transformer_conv_does_form_it():
    x, ei, ea = _inputs()
    assert _largest(lambda: TransformerConv(H * D, D, heads=H, edge_dim=F)(x, ei, ea)) >= E * H * D


@pytest.mark.parametrize("layer", [
    lambda: GraphAttnConv(H * D, D, heads=H, edge_dim=F),
    lambda: GraphAttnConv(H * D, D, heads=H, edge_dim=F, dropout=0.1),
    lambda: GINAttention(H * D, heads=H),
    lambda: PNAAttention(H * D, heads=H),
])
def test_layers_stay_below_e_h_d(layer, small_chunks):
    x, ei, ea = _inputs()
    module = layer()
    call = (lambda: module(x, ei, ea)) if isinstance(module, GraphAttnConv) else (lambda: module(x, ei))
    assert _largest(call) < E * H * D // 4
