"""PyG's own ``AttentionExplainer`` test (``test/explain/algorithm/test_attention_explainer.py``,
pyg-team/pytorch_geometric at fc741e9) with ``GATConv``, ``GATv2Conv`` and ``TransformerConv`` swapped for
graphattn's ``GATConv``, ``GATv2Conv`` and ``GraphAttnConv``, plus a model
made only of graphattn's attention layers and the heterogeneous case through ``to_hetero``. The explainer
reads the attention coefficients from the message hooks of every ``MessagePassing`` module."""
import pytest
import torch

from torch_geometric.data import HeteroData
from torch_geometric.explain import AttentionExplainer, Explainer, HeteroExplanation
from torch_geometric.explain.config import ExplanationType, MaskType
from torch_geometric.nn import to_hetero

from graphattn.nn import GATConv, GATv2Conv, GINAttention, GraphAttnConv as TransformerConv, PNAAttention


class GAT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = GATConv(3, 16, heads=4)
        self.conv2 = GATv2Conv(4 * 16, 16, heads=2)
        self.conv3 = TransformerConv(2 * 16, 7, heads=1)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        x = self.conv2(x, edge_index)
        x = self.conv3(x, edge_index)
        return x


class GraphAttnOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = TransformerConv(3, 8, heads=2)
        self.gin = GINAttention(16, heads=2)
        self.pna = PNAAttention(16, heads=2)
        self.out = TransformerConv(16, 7)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        x = self.pna(self.gin(x, edge_index), edge_index)
        return self.out(x, edge_index)


x = torch.randn(8, 3)
edge_index = torch.tensor([
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7],
    [1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 6, 5, 7, 6],
])


def _check(explanation):
    assert explanation.edge_mask.size() == (edge_index.size(1), )
    assert explanation.edge_mask.min() >= 0 and explanation.edge_mask.max() <= 1


@pytest.mark.parametrize('model', [GAT, GraphAttnOnly])
@pytest.mark.parametrize('index', [None, 2, torch.arange(3)])
def test_attention_explainer(model, index):
    explainer = Explainer(
        model=model(),
        algorithm=AttentionExplainer(),
        explanation_type='model',
        edge_mask_type='object',
        model_config=dict(
            mode='multiclass_classification',
            task_level='node',
            return_type='raw',
        ),
    )

    explanation = explainer(x, edge_index, index=index)
    _check(explanation)


def test_attention_explainer_sees_the_layers_weights():
    """With only the last layer's coefficients the explanation is that layer's maximum weight per edge."""
    conv = TransformerConv(3, 4, heads=2).eval()
    explainer = Explainer(model=conv, algorithm=AttentionExplainer(reduce='max'), explanation_type='model',
                          edge_mask_type='object',
                          model_config=dict(mode='regression', task_level='node', return_type='raw'))
    explanation = explainer(x, edge_index)
    _, (_, alpha) = conv(x, edge_index, return_attention_weights=True)
    torch.testing.assert_close(explanation.edge_mask, alpha.max(-1).values)


@pytest.mark.parametrize('mask_type', [m for m in MaskType])
@pytest.mark.parametrize('explanation_type', [e for e in ExplanationType])
def test_attention_explainer_supports(mask_type, explanation_type):
    model = GAT()

    with pytest.raises(
            ValueError,
            match=r".* does not support the given explanation setting"):
        _ = Explainer(
            model=model,
            algorithm=AttentionExplainer(),
            explanation_type=explanation_type,
            edge_mask_type='object',
            model_config=dict(
                mode='multiclass_classification',
                task_level='node',
                return_type='raw',
            ),
            node_mask_type=mask_type,
        )


def _hetero_data():
    def edges(num_src, num_dst, num_edges):
        return torch.stack([torch.randint(num_src, (num_edges, )), torch.randint(num_dst, (num_edges, ))])

    data = HeteroData()
    data['paper'].x = torch.randn(8, 16)
    data['author'].x = torch.randn(10, 8)
    data['paper', 'cites', 'paper'].edge_index = edges(8, 8, 10)
    data['author', 'writes', 'paper'].edge_index = edges(10, 8, 10)
    data['paper', 'rev_writes', 'author'].edge_index = edges(8, 10, 10)
    return data


class HeteroTransformer(torch.nn.Module):
    """PyG's test fixture ``HeteroSAGE`` (test/explain/conftest.py) with ``SAGEConv`` swapped."""

    def __init__(self, metadata):
        super().__init__()

        class GNN(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = TransformerConv((-1, -1), 16, heads=2)
                self.conv2 = TransformerConv((-1, -1), 32)

            def forward(self, x, edge_index):
                return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

        self.graph_sage = to_hetero(GNN(), metadata, debug=False)
        self.lin = torch.nn.Linear(32, 1)

    def forward(self, x_dict, edge_index_dict) -> torch.Tensor:
        return self.lin(self.graph_sage(x_dict, edge_index_dict)['paper'])


def test_attention_explainer_hetero():
    data = _hetero_data()
    model = HeteroTransformer(data.metadata())
    model(data.x_dict, data.edge_index_dict)                 # initialise the lazy layers
    explainer = Explainer(model=model, algorithm=AttentionExplainer(), explanation_type='model',
                          edge_mask_type='object',
                          model_config=dict(mode='regression', task_level='node', return_type='raw'))
    explanation = explainer(data.x_dict, data.edge_index_dict, index=torch.arange(3))
    assert isinstance(explanation, HeteroExplanation)
    for edge_type in data.edge_types:
        mask = explanation[edge_type].edge_mask
        assert mask.size() == (data[edge_type].num_edges, ) and mask.min() >= 0 and mask.max() <= 1
    assert any(explanation[t].edge_mask.sum() > 0 for t in data.edge_types)
