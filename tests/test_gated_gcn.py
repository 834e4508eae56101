"""GatedGCNLayer: GraphGPS's GatedGCN formula (float64, train and eval), isolated nodes, GraphGPS state_dicts."""
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import MessagePassing

from graphattn.nn import GatedGCNLayer

C = 6


def _graph(num_nodes=7, num_edges=20, channels=C, isolated=(5, 6)):
    """Random multigraph (self-loops allowed) whose nodes ``isolated`` have no in-edges."""
    src = torch.randint(0, num_nodes, (num_edges,))
    keep = [n for n in range(num_nodes) if n not in isolated]
    dst = torch.tensor(keep)[torch.randint(0, len(keep), (num_edges,))]
    x = torch.randn(num_nodes, channels, dtype=torch.double, requires_grad=True)
    e = torch.randn(num_edges, channels, dtype=torch.double, requires_grad=True)
    return x, torch.stack([src, dst]), e


def _randomise_norms(layer):
    with torch.no_grad():
        for bn in (layer.bn_node_x, layer.bn_edge_e):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)


def _bn(bn, v, training):
    if training:
        mean, var = v.mean(0), v.var(0, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    return (v - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def _reference(layer, x, edge_index, e):
    """The formula edge by edge and node by node (no scatter): sigma_ij = sigmoid(D x_i + E x_j + C e_ij),
    x_i' = A x_i + sum_j sigma_ij B x_j / (sum_j sigma_ij + 1e-6), then BN, ReLU and the residual."""
    src, dst = edge_index.tolist()
    e_hat = torch.stack([layer.D(x[i]) + layer.E(x[j]) + layer.C(e[k]) for k, (j, i) in enumerate(zip(src, dst))])
    sigma = torch.sigmoid(e_hat)
    rows = []
    for i in range(x.size(0)):
        into = [k for k in range(len(src)) if dst[k] == i]
        num = sum((sigma[k] * layer.B(x[src[k]]) for k in into), torch.zeros_like(x[i]))
        den = sum((sigma[k] for k in into), torch.zeros_like(x[i]))
        rows.append(layer.A(x[i]) + num / (den + 1e-6))
    x_hat = torch.stack(rows)
    x_out = F.relu(_bn(layer.bn_node_x, x_hat, layer.training))
    e_out = F.relu(_bn(layer.bn_edge_e, e_hat, layer.training))
    return (x + x_out, e + e_out) if layer.residual else (x_out, e_out)


@pytest.mark.parametrize("through_propagate", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_outputs_and_gradients_match_the_formula(training, residual, through_propagate):
    """Both paths: the fast one and PyG's propagate (taken when a message hook is registered)."""
    layer = GatedGCNLayer(C, C, residual=residual).double().train(training)
    _randomise_norms(layer)
    x, edge_index, e = _graph()
    messages = []
    if through_propagate:
        layer.register_message_forward_hook(lambda module, inputs, out: messages.append(out))
    out = layer(x, edge_index, e)
    assert len(messages) == int(through_propagate)
    if through_propagate:                        # [sigma * B x_j || sigma] per edge
        assert messages[0].shape == (edge_index.size(1), 2 * C)
    ref = _reference(layer, x, edge_index, e)
    for got, want in zip(out, ref):
        torch.testing.assert_close(got, want)
    weights = [torch.randn_like(t) for t in ref]
    inputs = [x, e, *layer.parameters()]
    grads = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, out)), inputs)
    expected = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, ref)), inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_isolated_nodes_and_no_edges():
    layer = GatedGCNLayer(C, C).double().eval()
    _randomise_norms(layer)
    x, edge_index, e = _graph(isolated=(0, 3, 6))
    out, _ = layer(x, edge_index, e)
    for i in (0, 3, 6):      # no in-edges: x_i + ReLU(BN(A x_i))
        torch.testing.assert_close(out[i], x[i] + F.relu(_bn(layer.bn_node_x, layer.A(x[i]), False)))
    out, e_out = layer(x, torch.zeros(2, 0, dtype=torch.long), e[:0])
    assert e_out.shape == (0, C) and torch.isfinite(out).all()


def test_dropout_and_shapes():
    layer = GatedGCNLayer(C, 4, dropout=0.5, residual=False).train()
    x, edge_index, e = _graph()
    x, e = x.detach().float(), e.detach().float()
    dropped = layer(x, edge_index, e)
    layer.dropout = 0.0
    for got, full in zip(dropped, layer(x, edge_index, e)):
        assert got.shape == full.shape and got.size(1) == 4
        kept = got != 0
        torch.testing.assert_close(got[kept], 2 * full[kept])       # the rest is dropped: scaled by 1 / (1 - p)
        assert (kept.float().mean() < (full != 0).float().mean())
    with pytest.raises(ValueError, match="residual"):
        GatedGCNLayer(C, 4)
    with pytest.raises(ValueError, match="edge_attr"):
        GatedGCNLayer(C, C)(x, edge_index, None)


class _GraphGPSGatedGCN(MessagePassing):
    """Stand-in with GraphGPS's parameter names and its message / aggregate / update split: the gate
    is computed in ``message`` from ``Dx_i``, ``Ex_j`` and ``Ce``, normalised in ``aggregate``."""

    def __init__(self, dim, residual=True):
        super().__init__()
        self.A, self.B, self.C, self.D, self.E = (torch.nn.Linear(dim, dim) for _ in range(5))
        self.bn_node_x, self.bn_edge_e = torch.nn.BatchNorm1d(dim), torch.nn.BatchNorm1d(dim)
        self.residual = residual

    def forward(self, x, edge_index, e):
        x_new, e_new = self.propagate(edge_index, Bx=self.B(x), Dx=self.D(x), Ex=self.E(x), Ce=self.C(e), Ax=self.A(x))
        x_new, e_new = F.relu(self.bn_node_x(x_new)), F.relu(self.bn_edge_e(e_new))
        return (x + x_new, e + e_new) if self.residual else (x_new, e_new)

    def message(self, Dx_i, Ex_j, Ce):
        self._e = Dx_i + Ex_j + Ce
        return torch.sigmoid(self._e)

    def aggregate(self, sigma, index, Bx_j, Bx):
        num = torch.zeros_like(Bx).index_add(0, index, sigma * Bx_j)
        den = torch.zeros_like(Bx).index_add(0, index, sigma)
        return num / (den + 1e-6)

    def update(self, aggr, Ax):
        return Ax + aggr, self._e


@pytest.mark.parametrize("training", [True, False])
def test_loads_a_graphgps_state_dict(training):
    theirs = _GraphGPSGatedGCN(C).double()
    _randomise_norms(theirs)
    ours = GatedGCNLayer(C, C).double()
    ours.load_state_dict(theirs.state_dict())
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.train(training), ours.train(training)
    x, edge_index, e = _graph()
    for got, want in zip(ours(x, edge_index, e), theirs(x, edge_index, e)):
        torch.testing.assert_close(got, want)


def test_is_a_message_passing_whose_edge_mask_removes_edges_from_the_node_update():
    """Explain mode: a 0/1 edge mask takes the masked edges out of both sums (numerator and
    denominator); the edge outputs are not masked."""
    layer = GatedGCNLayer(C, C).double().eval()
    assert isinstance(layer, MessagePassing)
    _randomise_norms(layer)
    x, edge_index, e = _graph(num_edges=30)
    keep = torch.rand(edge_index.size(1)) < 0.6
    set_masks(layer, keep.double(), edge_index, apply_sigmoid=False)
    try:
        x_masked, e_masked = layer(x, edge_index, e)
    finally:
        clear_masks(layer)
    x_kept, _ = layer(x, edge_index[:, keep], e[keep])
    x_all, e_all = layer(x, edge_index, e)
    torch.testing.assert_close(x_masked, x_kept)
    torch.testing.assert_close(e_masked, e_all)
    assert not torch.allclose(x_masked, x_all)
