"""PyG's own ``GNNExplainer`` test (``test/explain/algorithm/test_gnn_explainer.py``, pyg-team/pytorch_geometric,
the version without ``target_index``) with the model built from ``GraphAttnConv`` (PyG's ``TransformerConv``
case) instead of ``GCNConv``: the full matrix of modes, task levels, return types, mask types and indices, and
a single edge-feature layer in place of the ``ChebConv`` / ``AttentiveFP`` cases. Edge masks only train if they
reach the messages: ``GraphAttnConv`` is a ``MessagePassing`` whose explain mode sends the messages through
PyG's ``explain_message``; ``test_edge_mask_multiplies_the_attention_weights`` checks the values."""
import pytest
import torch
import torch_geometric

from torch_geometric.explain import Explainer, Explanation, GNNExplainer
from torch_geometric.explain.config import (
    ExplanationType,
    MaskType,
    ModelConfig,
    ModelMode,
    ModelReturnType,
    ModelTaskLevel,
)
from torch_geometric.nn import global_add_pool

from graphattn.nn import GraphAttnConv


class GCN(torch.nn.Module):
    def __init__(self, model_config: ModelConfig):
        super().__init__()
        self.model_config = model_config

        if model_config.mode == ModelMode.multiclass_classification:
            out_channels = 7
        else:
            out_channels = 1

        self.conv1 = GraphAttnConv(3, 8, heads=2)
        self.conv2 = GraphAttnConv(16, out_channels)

    def forward(self, x, edge_index, batch=None, edge_label_index=None):
        x = self.conv1(x, edge_index).relu()
        x = self.conv2(x, edge_index)

        if self.model_config.task_level == ModelTaskLevel.graph:
            x = global_add_pool(x, batch)
        elif self.model_config.task_level == ModelTaskLevel.edge:
            assert edge_label_index is not None
            x = x[edge_label_index[0]] * x[edge_label_index[1]]

        if self.model_config.mode == ModelMode.binary_classification:
            if self.model_config.return_type == ModelReturnType.probs:
                x = x.sigmoid()
        elif self.model_config.mode == ModelMode.multiclass_classification:
            if self.model_config.return_type == ModelReturnType.probs:
                x = x.softmax(dim=-1)
            elif self.model_config.return_type == ModelReturnType.log_probs:
                x = x.log_softmax(dim=-1)

        return x


def check_explanation(explanation: Explanation, node_mask_type, edge_mask_type):
    """PyG's ``check_explanation`` fixture (test/explain/conftest.py)."""
    if node_mask_type == MaskType.attributes:
        assert explanation.node_mask.size() == explanation.x.size()
        assert explanation.node_mask.min() >= 0
        assert explanation.node_mask.max() <= 1
    elif node_mask_type == MaskType.object:
        assert explanation.node_mask.size() == (explanation.num_nodes, 1)
        assert explanation.node_mask.min() >= 0
        assert explanation.node_mask.max() <= 1
    elif node_mask_type == MaskType.common_attributes:
        assert explanation.node_mask.size() == (1, explanation.num_features)
        assert explanation.node_mask.min() >= 0
        assert explanation.node_mask.max() <= 1
    elif node_mask_type is None:
        assert 'node_mask' not in explanation

    if edge_mask_type == MaskType.object:
        assert explanation.edge_mask.size() == (explanation.num_edges, )
        assert explanation.edge_mask.min() >= 0
        assert explanation.edge_mask.max() <= 1
    elif edge_mask_type is None:
        assert 'edge_mask' not in explanation


node_mask_types = [
    MaskType.object,
    MaskType.common_attributes,
    MaskType.attributes,
]
edge_mask_types = [MaskType.object, None]
explanation_types = [ExplanationType.model, ExplanationType.phenomenon]
task_levels = [ModelTaskLevel.node, ModelTaskLevel.edge, ModelTaskLevel.graph]
indices = [None, 2, torch.arange(3)]

x = torch.randn(8, 3)
edge_index = torch.tensor([
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7],
    [1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 6, 5, 7, 6],
])
edge_attr = torch.randn(edge_index.size(1), 5)
batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
edge_label_index = torch.tensor([[0, 1, 2], [3, 4, 5]])


def _explain(model_config, explanation_type, node_mask_type, edge_mask_type, index, phenomenon_target):
    model = GCN(model_config)
    target = None
    if explanation_type == ExplanationType.phenomenon:
        with torch.no_grad():
            target = phenomenon_target(model(x, edge_index, batch, edge_label_index))
    explainer = Explainer(
        model=model,
        algorithm=GNNExplainer(epochs=2),
        explanation_type=explanation_type,
        node_mask_type=node_mask_type,
        edge_mask_type=edge_mask_type,
        model_config=model_config,
    )
    explanation = explainer(x, edge_index, target=target, index=index, batch=batch,
                            edge_label_index=edge_label_index)
    assert explainer.algorithm.node_mask is None
    assert explainer.algorithm.edge_mask is None
    check_explanation(explanation, node_mask_type, edge_mask_type)


@pytest.mark.parametrize('edge_mask_type', edge_mask_types)
@pytest.mark.parametrize('node_mask_type', node_mask_types)
@pytest.mark.parametrize('explanation_type', explanation_types)
@pytest.mark.parametrize('task_level', task_levels)
@pytest.mark.parametrize('return_type', [ModelReturnType.probs, ModelReturnType.raw])
@pytest.mark.parametrize('index', indices)
def test_gnn_explainer_binary_classification(edge_mask_type, node_mask_type, explanation_type, task_level,
                                             return_type, index):
    model_config = ModelConfig(mode='binary_classification', task_level=task_level, return_type=return_type)
    threshold = 0 if return_type == ModelReturnType.raw else 0.5
    _explain(model_config, explanation_type, node_mask_type, edge_mask_type, index,
             lambda out: (out > threshold).long().view(-1))


@pytest.mark.parametrize('edge_mask_type', edge_mask_types)
@pytest.mark.parametrize('node_mask_type', node_mask_types)
@pytest.mark.parametrize('explanation_type', explanation_types)
@pytest.mark.parametrize('task_level', task_levels)
@pytest.mark.parametrize('return_type', [ModelReturnType.log_probs, ModelReturnType.probs, ModelReturnType.raw])
@pytest.mark.parametrize('index', indices)
def test_gnn_explainer_multiclass_classification(edge_mask_type, node_mask_type, explanation_type, task_level,
                                                 return_type, index):
    model_config = ModelConfig(mode='multiclass_classification', task_level=task_level, return_type=return_type)
    _explain(model_config, explanation_type, node_mask_type, edge_mask_type, index, lambda out: out.argmax(-1))


@pytest.mark.parametrize('edge_mask_type', edge_mask_types)
@pytest.mark.parametrize('node_mask_type', node_mask_types)
@pytest.mark.parametrize('explanation_type', explanation_types)
@pytest.mark.parametrize('task_level', task_levels)
@pytest.mark.parametrize('index', indices)
def test_gnn_explainer_regression(edge_mask_type, node_mask_type, explanation_type, task_level, index):
    model_config = ModelConfig(mode='regression', task_level=task_level)
    _explain(model_config, explanation_type, node_mask_type, edge_mask_type, index, lambda out: out)


def test_gnn_explainer_edge_features():
    """In place of PyG's ``AttentiveFP`` case: a layer that reads edge features."""
    explainer = Explainer(
        model=GraphAttnConv(3, 1, heads=2, concat=False, edge_dim=5),
        algorithm=GNNExplainer(epochs=2),
        explanation_type='model',
        node_mask_type='object',
        edge_mask_type='object',
        model_config=dict(mode='binary_classification', task_level='node', return_type='raw'),
    )
    explanation = explainer(x, edge_index, edge_attr=edge_attr)
    assert explainer.algorithm.node_mask is None
    assert explainer.algorithm.edge_mask is None
    check_explanation(explanation, MaskType.object, MaskType.object)


def test_gnn_explainer_sees_the_gated_gcn_of_a_gps_model():
    """GPS with GatedGCN: the GatedGCN layers are the model's MessagePassing modules, so the explainer's
    edge mask reaches their messages and trains (GNNExplainer raises when no edge gradient arrives)."""
    from graphattn.models import GPS
    from graphattn.nn import GatedGCNLayer

    torch.manual_seed(0)
    model = GPS(8, 1, num_layers=2, heads=2, local_conv='gatedgcn', node_encoder=3, edge_encoder=5).eval()
    convs = [m for m in model.modules() if isinstance(m, torch_geometric.nn.MessagePassing)]
    assert len(convs) == 2 and all(isinstance(m, GatedGCNLayer) for m in convs)
    explainer = Explainer(
        model=model,
        algorithm=GNNExplainer(epochs=3),
        explanation_type='model',
        edge_mask_type='object',
        model_config=dict(mode='regression', task_level='graph', return_type='raw'),
    )
    explanation = explainer(x, edge_index, edge_attr=edge_attr)
    check_explanation(explanation, None, MaskType.object)
    assert explanation.edge_mask.std() > 0                # trained per edge, not left at one value


def test_edge_mask_multiplies_the_attention_weights():
    """In explain mode a message is multiplied by sigmoid(mask) exactly where PyG's explain_message does:
    the output equals attention with the weights multiplied by the mask, on the engine."""
    import graphattn as ga
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

    torch.manual_seed(0)
    conv = GraphAttnConv(3, 4, heads=2, edge_dim=2, root_weight=False).double()
    xd, ea = x.double(), torch.randn(edge_index.size(1), 2, dtype=torch.double)
    mask = torch.randn(edge_index.size(1), dtype=torch.double, requires_grad=True)
    set_masks(conv, mask, edge_index, apply_sigmoid=True)
    out = conv(xd, edge_index, ea)
    clear_masks(conv)
    q = conv.lin_query(xd).view(-1, 2, 4)
    k, v = conv.lin_key(xd).view(-1, 2, 4), conv.lin_value(xd).view(-1, 2, 4)
    e = conv.lin_edge(ea).view(-1, 2, 4)
    graph = ga.AttentionGraph(edge_index, 8)
    weights = ga.attention_weights(q, k, graph, edge_k=e) * mask.sigmoid().unsqueeze(-1)
    expected = ga.aggregate(weights, v, graph, edge_v=e).reshape(8, -1)
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out.sum(), mask)
    assert grad.abs().sum() > 0                          # the mask is trained through the messages
