import math

import pytest
import torch

from graphattn import AttentionGraph
from graphattn.nn import GINAttention, PNAAttention
from helpers import assert_grads_everywhere, assert_per_graph, masked_weights, permute, random_batch, random_data


def _dense_attention(layer, x, mask):
    """Dense per-head weights A [H, N, N] (rows: queries) restricted to ``mask`` [N, N] and head slices."""
    n, H = x.size(0), layer.heads
    att = layer.attn
    q = att.q_proj(x).view(n, H, -1) * (att.alpha / att.temperature)[:, None]
    k = att.k_proj(x).view(n, H, -1)
    v = (att.v_proj(x) if att.v_proj is not None else x).view(n, H, -1)
    s = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(q.size(-1))
    return masked_weights(s, mask), v                                     # rows without edges -> 0


def _mask(edge_index, n):
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True
    return mask


def _graph():
    """Small graph, no self-loops and no duplicate edges; node 5 isolated."""
    ei = torch.tensor([[1, 2, 3, 0, 4, 0, 1, 4], [0, 0, 0, 1, 1, 2, 3, 3]])
    return ei, 6


@pytest.mark.parametrize("eps_form", ["gin", "released"])
@pytest.mark.parametrize("value_proj", [False, True])
def test_gin_attention_dense_reference(eps_form, value_proj):
    ei, n = _graph()
    layer = GINAttention(8, heads=2, mlp_ratio=2, eps=0.3, eps_form=eps_form, value_proj=value_proj).double()
    x = torch.randn(n, 8, dtype=torch.double)
    a, v = _dense_attention(layer, x, _mask(ei, n))
    agg = torch.einsum("hij,jhd->ihd", a, v)
    root = (1 + layer.eps if eps_form == "gin" else layer.eps)[:, None] * v
    ref = layer.o_proj(layer.mlp(root + agg).reshape(n, -1))
    torch.testing.assert_close(layer(x, ei), ref)


def _pna_reference(layer, x, ei, n):
    a, v = _dense_attention(layer, x, _mask(ei, n))
    mask = _mask(ei, n)
    deg = mask.sum(1).to(x.dtype).view(n, 1, 1)
    msgs = a.permute(1, 2, 0)[..., None] * v.unsqueeze(0)                # [i, j, H, d] = a_ij x_j
    total = msgs.sum(1)
    mean = total / deg.clamp(min=1)
    big = torch.where(mask[..., None, None], msgs, torch.full_like(msgs, float("-inf")))
    mx = big.max(dim=1).values                                           # over neighbours j only
    mx = torch.where(torch.isinf(mx), torch.zeros_like(mx), mx)
    second = (msgs ** 2).sum(1) / deg.clamp(min=1)
    std = torch.sqrt(torch.relu(second - mean ** 2) + 1e-5)
    aggs = {"sum": total, "mean": mean, "max": mx, "std": std}
    h = torch.cat([aggs[k] for k in layer.aggregators], -1)
    log_deg = torch.log(deg + 1)
    sc = {"identity": h, "amplification": h * log_deg / layer.avg_log_deg,
          "attenuation": h * layer.avg_log_deg / log_deg.clamp(min=math.log(2))}
    h = torch.cat([sc[k] for k in layer.scalers], -1)
    return layer.o_proj(layer.mlp(h).reshape(n, -1)), aggs


def test_pna_attention_dense_reference():
    ei, n = _graph()
    deg_hist = torch.tensor([1, 2, 2, 1])
    layer = PNAAttention(8, heads=2, scalers=("identity", "amplification", "attenuation"), deg=deg_hist).double()
    x = torch.randn(n, 8, dtype=torch.double)
    ref, _ = _pna_reference(layer, x, ei, n)
    torch.testing.assert_close(layer(x, ei), ref)
    expected_delta = (2 * math.log(2) + 2 * math.log(3) + math.log(4)) / 6
    assert layer.avg_log_deg == pytest.approx(expected_delta)


@pytest.mark.parametrize("aggregator", ["max", "mean", "std"])
def test_pna_single_aggregator_and_max_excludes_self(aggregator):
    ei, n = _graph()
    layer = PNAAttention(4, heads=1, aggregators=(aggregator,)).double()
    x = torch.randn(n, 4, dtype=torch.double)
    x[0] = 100.0                                                          # node 0 is not its own neighbour
    ref, aggs = _pna_reference(layer, x, ei, n)
    torch.testing.assert_close(layer(x, ei), ref)
    if aggregator == "max":
        assert (aggs["max"][0] < 50).all()


def test_on_a_sequence_pattern():
    """Any AttentionGraph: here causal attention over 7 tokens (j <= i)."""
    n = 7
    i, j = torch.tril_indices(n, n)
    graph = AttentionGraph(torch.stack([j, i]), n)
    x = torch.randn(n, 8, dtype=torch.double)
    gin = GINAttention(8, heads=2).double()
    a, v = _dense_attention(gin, x, torch.ones(n, n, dtype=torch.bool).tril())
    ref = gin.o_proj(gin.mlp((1 + gin.eps)[:, None] * v + torch.einsum("hij,jhd->ihd", a, v)).reshape(n, -1))
    torch.testing.assert_close(gin(x, graph), ref)
    pna = PNAAttention(8, heads=2).double()
    torch.testing.assert_close(pna(x, graph), _pna_reference(pna, x, graph.edge_index, n)[0])


@pytest.mark.parametrize("cls", [GINAttention, PNAAttention])
def test_per_graph_permutation_gradients(cls):
    layer = cls(8, heads=2, dropout=0.1).eval()
    batch = random_batch([5, 1, 7, 3], 8)
    assert_per_graph(lambda b: layer(b.x, b.edge_index), batch)
    data = random_data(9, 30, 8)
    perm = torch.randperm(9)
    p = permute(data, perm)
    torch.testing.assert_close(layer(data.x, data.edge_index)[perm], layer(p.x, p.edge_index), atol=1e-5, rtol=1e-4)
    layer.train()
    layer(batch.x, batch.edge_index).square().sum().backward()
    assert_grads_everywhere(layer)


def test_bad_arguments():
    with pytest.raises(ValueError, match="aggregators"):
        PNAAttention(8, 2, aggregators=("median",))
    with pytest.raises(ValueError, match="eps_form"):
        GINAttention(8, 2, eps_form="x")
    with pytest.raises(ValueError, match="divisible"):
        GINAttention(9, 2)
