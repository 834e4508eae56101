import pytest
import torch

from graphattn.nn import VirtualNode
from helpers import assert_grads_everywhere, random_batch


@pytest.mark.parametrize("k", [1, 3])
def test_broadcast_update_match_hand_computation(k):
    vn = VirtualNode(6, num_virtual_nodes=k).double().eval()
    batch = random_batch([3, 1, 4], 6, dtype=torch.double)
    state = torch.randn(3, k, 6, dtype=torch.double)
    out = vn.broadcast(batch.x, state, batch.batch)
    torch.testing.assert_close(out, batch.x + state.mean(1)[batch.batch])
    new = vn.update(batch.x, state, batch.batch)
    for g in range(3):
        pooled = batch.x[batch.batch == g].sum(0)
        for j in range(k):
            expected = state[g, j] + vn.mlps[j]((pooled + state[g, j]).unsqueeze(0)).squeeze(0)
            torch.testing.assert_close(new[g, j], expected)


def test_per_graph_gradients_and_shapes():
    vn = VirtualNode(4, num_virtual_nodes=2, dropout=0.1).eval()
    batch = random_batch([2, 5, 1], 4)
    x, state = vn(batch.x, None, batch.batch)
    assert state.shape == (3, 2, 4) and torch.equal(x, batch.x)
    state = torch.randn(3, 2, 4)
    full = vn.update(batch.x, state, batch.batch)
    for g in range(3):
        alone = vn.update(batch.x[batch.batch == g], state[g:g + 1], torch.zeros(int((batch.batch == g).sum()),
                                                                                dtype=torch.long))
        torch.testing.assert_close(full[g:g + 1], alone)
    vn.train()
    vn.update(vn.broadcast(batch.x, state, batch.batch), state, batch.batch).square().sum().backward()
    assert_grads_everywhere(vn)
    with pytest.raises(ValueError, match="state"):
        vn.broadcast(batch.x, torch.zeros(3, 1, 4), batch.batch)


def test_ogb_options_hidden_width_and_no_residual():
    """OGB's gin-virtual: MLP Linear(C, 2C)-BN-ReLU-Linear(2C, C)-BN-ReLU, v <- Dropout(MLP(sum x + v))."""
    vn = VirtualNode(6, hidden_factor=2, residual=False).double().eval()
    widths = [m.out_features for m in vn.mlps[0] if isinstance(m, torch.nn.Linear)]
    assert widths == [12, 6]
    batch = random_batch([3, 2], 6, dtype=torch.double)
    state = torch.randn(2, 1, 6, dtype=torch.double)
    new = vn.update(batch.x, state, batch.batch)
    for g in range(2):
        pooled = batch.x[batch.batch == g].sum(0)
        torch.testing.assert_close(new[g, 0], vn.mlps[0]((pooled + state[g, 0]).unsqueeze(0)).squeeze(0))
    with pytest.raises(ValueError, match="hidden_factor"):
        VirtualNode(6, hidden_factor=0)
