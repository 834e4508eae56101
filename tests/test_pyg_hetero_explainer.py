"""PyG's heterogeneous explainer tests (``test/explain/test_hetero_explainer.py`` at 743ebf2 and the
``hetero_model`` fixture of ``test/explain/conftest.py``) with the fixture's ``SAGEConv`` swapped for
``GraphAttnConv``: a ``to_hetero`` model of graphattn layers explained with masks on every node and edge
type, and trained on the heterogeneous graph."""
import pytest
import torch

from torch_geometric.data import HeteroData
from torch_geometric.explain import Explainer, GNNExplainer, HeteroExplanation
from torch_geometric.nn import to_hetero

from graphattn.nn import GraphAttnConv


def get_edge_index(num_src_nodes, num_dst_nodes, num_edges):
    row = torch.randint(num_src_nodes, (num_edges, ), dtype=torch.long)
    col = torch.randint(num_dst_nodes, (num_edges, ), dtype=torch.long)
    return torch.stack([row, col], dim=0)


@pytest.fixture
def data():
    data = HeteroData()
    data['paper'].x = torch.randn(8, 16)
    data['author'].x = torch.randn(10, 8)
    data['paper', 'paper'].edge_index = get_edge_index(8, 8, 10)
    data['author', 'paper'].edge_index = get_edge_index(10, 8, 10)
    data['paper', 'author'].edge_index = get_edge_index(8, 10, 10)
    return data


class GraphAttn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = GraphAttnConv((-1, -1), 32)
        self.conv2 = GraphAttnConv((-1, -1), 32)

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index).relu()
        return self.conv2(x, edge_index)


class HeteroGraphAttn(torch.nn.Module):
    def __init__(self, metadata):
        super().__init__()
        self.graph_attn = to_hetero(GraphAttn(), metadata, debug=False)
        self.lin = torch.nn.Linear(32, 1)

    def forward(self, x_dict, edge_index_dict, additonal_arg=None) -> torch.Tensor:
        return self.lin(self.graph_attn(x_dict, edge_index_dict)['paper'])


@pytest.mark.parametrize('node_mask_type', ['object', 'attributes'])
@pytest.mark.parametrize('index', [None, 2, torch.arange(3)])
def test_gnn_explainer_on_to_hetero_model(data, node_mask_type, index):
    model = HeteroGraphAttn(data.metadata())
    explainer = Explainer(
        model,
        algorithm=GNNExplainer(epochs=2),
        explanation_type='model',
        node_mask_type=node_mask_type,
        edge_mask_type='object',
        model_config=dict(mode='regression', task_level='node', return_type='raw'),
    )
    explanation = explainer(data.x_dict, data.edge_index_dict, index=index)
    assert isinstance(explanation, HeteroExplanation)
    for key in explanation.node_types:
        expected = data[key].x.size() if node_mask_type == 'attributes' else (data[key].num_nodes, 1)
        assert explanation[key].node_mask.size() == expected
    for key in data.edge_types:
        mask = explanation[key].edge_mask
        assert mask.size() == (data[key].num_edges, ) and mask.min() >= 0 and mask.max() <= 1


def test_to_hetero_model_trains(data):
    torch.manual_seed(0)
    model = HeteroGraphAttn(data.metadata())
    model(data.x_dict, data.edge_index_dict)                 # initialise the lazy layers
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    target = torch.randn(8, 1)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data.x_dict, data.edge_index_dict), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
