"""PyG's own ``TransformerConv`` test (``test/nn/conv/test_transformer_conv.py``, pyg-team/pytorch_geometric
at e26d3a8), adapted only by swapping the class for ``GraphAttnConv``. Dropped: the assertions on the class
name inside ``str(conv)`` and the ``torch.jit.script`` blocks (deprecated in torch 2.13); the
``SparseTensor`` blocks run where ``torch-sparse`` is installed, as in PyG."""
import torch

import torch_geometric.typing
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import to_torch_csc_tensor

from graphattn.nn import GraphAttnConv as TransformerConv


def test_transformer_conv():
    x1 = torch.randn(4, 8)
    x2 = torch.randn(2, 16)
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    adj1 = to_torch_csc_tensor(edge_index, size=(4, 4))

    conv = TransformerConv(8, 32, heads=2, beta=True)
    assert str(conv).endswith('(8, 32, heads=2)')

    out = conv(x1, edge_index)
    assert out.size() == (4, 64)
    assert torch.allclose(conv(x1, adj1.t()), out, atol=1e-6)

    if torch_geometric.typing.WITH_TORCH_SPARSE:
        adj2 = SparseTensor.from_edge_index(edge_index, sparse_sizes=(4, 4))
        assert torch.allclose(conv(x1, adj2.t()), out, atol=1e-6)

    # Test `return_attention_weights`.
    result = conv(x1, edge_index, return_attention_weights=True)
    assert torch.allclose(result[0], out)
    assert result[1][0].size() == (2, 4)
    assert result[1][1].size() == (4, 2)
    assert result[1][1].min() >= 0 and result[1][1].max() <= 1
    assert conv._alpha is None

    if torch_geometric.typing.WITH_TORCH_SPARSE:
        result = conv(x1, adj2.t(), return_attention_weights=True)
        assert torch.allclose(result[0], out, atol=1e-6)
        assert result[1].sizes() == [4, 4, 2] and result[1].nnz() == 4
        assert conv._alpha is None

    # Test bipartite message passing:
    adj1 = to_torch_csc_tensor(edge_index, size=(4, 2))

    conv = TransformerConv((8, 16), 32, heads=2, beta=True)
    assert str(conv).endswith('((8, 16), 32, heads=2)')

    out = conv((x1, x2), edge_index)
    assert out.size() == (2, 64)
    assert torch.allclose(conv((x1, x2), adj1.t()), out, atol=1e-6)

    if torch_geometric.typing.WITH_TORCH_SPARSE:
        adj2 = SparseTensor.from_edge_index(edge_index, sparse_sizes=(4, 2))
        assert torch.allclose(conv((x1, x2), adj2.t()), out, atol=1e-6)


def test_transformer_conv_with_edge_features_in_adj_t():
    """``ToSparseTensor(attr="edge_attr")`` carries the edge features as the values of ``adj_t``."""
    import torch_geometric.transforms as T
    from torch_geometric.data import Data

    data = Data(x=torch.randn(4, 8), edge_index=torch.tensor([[0, 1, 2, 3, 3], [0, 0, 1, 1, 2]]),
                edge_attr=torch.randn(5, 3))
    conv = TransformerConv(8, 4, heads=2, edge_dim=3)
    out = conv(data.x, data.edge_index, data.edge_attr)
    sparse = T.ToSparseTensor(attr="edge_attr")(data.clone())
    assert torch.allclose(conv(sparse.x, sparse.adj_t), out, atol=1e-6)
