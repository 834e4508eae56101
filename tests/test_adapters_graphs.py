"""Attention graphs of a layer: against dense softmax probabilities and HF eager attention."""
import copy

import pytest
import torch

from graphattn.adapters import allowed_pairs, attention_graph, collect_attention_graphs
from helpers import masked_weights

transformers = pytest.importorskip("transformers")


def _dense(graph, batch, q_len, k_len):
    """[B, C, L_q, L_k] dense weights of a graph built by attention_graph."""
    channels = graph.edge_weight.size(1)
    out = torch.zeros(batch * q_len, batch * k_len, channels, dtype=graph.edge_weight.dtype)
    out[graph.edge_index[1], graph.edge_index[0]] = graph.edge_weight
    blocks = [out[b * q_len:(b + 1) * q_len, b * k_len:(b + 1) * k_len] for b in range(batch)]
    off_block = out.clone()
    for b in range(batch):
        off_block[b * q_len:(b + 1) * q_len, b * k_len:(b + 1) * k_len] = 0
    assert not off_block.any(), "edges across sequences"
    return torch.stack(blocks).permute(0, 3, 1, 2)


def _reference(q, k, allowed, scale):
    """[B, H, L_q, L_k] softmax probabilities over the ``allowed`` [B, L_q, L_k] keys (the dense oracle's)."""
    return masked_weights(torch.einsum("bhid,bhjd->bhij", q, k) * scale, allowed[:, None])


def _padding_mask(batch, length, lengths):
    keep = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return keep[:, None, None, :].expand(batch, 1, length, length)


def test_full_graph_equals_softmax_with_padding_excluded():
    q, k = torch.randn(3, 4, 7, 5, dtype=torch.float64), torch.randn(3, 4, 7, 5, dtype=torch.float64)
    mask = _padding_mask(3, 7, [7, 4, 1])
    graph = attention_graph(q, k, mask, scaling=0.3)
    allowed = allowed_pairs(mask, 3, 7, 7, False, q.device)
    torch.testing.assert_close(_dense(graph, 3, 7, 7), _reference(q, k, allowed, 0.3), rtol=1e-12, atol=1e-12)
    dst = graph.edge_index[1]
    assert not ((dst >= 7 + 4) & (dst < 14)).any() and not (dst >= 14 + 1).any()  # padding queries: no edge
    assert graph.num_edges == 49 + 16 + 1
    assert bool((dst[1:] >= dst[:-1]).all())                          # built sorted by destination


def test_additive_mask_and_bool_mask_agree():
    q, k = torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4)
    mask = _padding_mask(2, 6, [6, 3])
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    a, b = attention_graph(q, k, mask), attention_graph(q, k, additive)
    assert torch.equal(a.edge_index, b.edge_index)
    torch.testing.assert_close(a.edge_weight, b.edge_weight)


def test_causal_grouped_query_graph():
    q, k = torch.randn(2, 4, 6, 3, dtype=torch.float64), torch.randn(2, 2, 6, 3, dtype=torch.float64)
    graph = attention_graph(q, k, None, is_causal=True)
    src, dst = graph.edge_index % 6
    assert (src <= dst).all() and graph.num_edges == 2 * 21
    allowed = torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 6, 6)
    ref = _reference(q, k.repeat_interleave(2, dim=1), allowed, 3 ** -0.5)
    torch.testing.assert_close(_dense(graph, 2, 6, 6), ref)


@pytest.mark.parametrize("threshold,top_k", [(0.2, None), (None, 2), (0.1, 3)])
def test_thresholded_top_k_per_head(threshold, top_k):
    q, k = 2 * torch.randn(2, 3, 9, 4, dtype=torch.float64), torch.randn(2, 3, 9, 4, dtype=torch.float64)
    mask = _padding_mask(2, 9, [9, 5])
    graph = attention_graph(q, k, mask, threshold=threshold, top_k=top_k)
    probs = _reference(q, k, allowed_pairs(mask, 2, 9, 9, False, q.device), 0.5)
    keep = probs > 0
    if threshold is not None:
        keep &= probs > threshold
    if top_k is not None:
        kth = probs.masked_fill(~keep, -1).topk(top_k, -1).values[..., -1:]
        keep &= probs >= kth
    torch.testing.assert_close(_dense(graph, 2, 9, 9), probs * keep)
    assert graph.num_edges == int(keep.any(1).sum())            # union over heads, nothing more
    if top_k is not None:
        assert (keep.sum(-1) <= top_k).all()


def test_reduced_heads_and_block_boundaries(monkeypatch):
    import graphattn.adapters.attention_graphs as ag

    monkeypatch.setattr(ag, "BLOCK_ELEMENTS", 40)              # forces query blocks of size 1
    q, k = torch.randn(3, 2, 5, 4, dtype=torch.float64), torch.randn(3, 2, 5, 4, dtype=torch.float64)
    mask = _padding_mask(3, 5, [5, 2, 4])
    graph = attention_graph(q, k, mask, reduce_heads="sum", threshold=0.3)
    probs = _reference(q, k, allowed_pairs(mask, 3, 5, 5, False, q.device), 0.5).sum(1, keepdim=True)
    torch.testing.assert_close(_dense(graph, 3, 5, 5), probs * (probs > 0.3))
    assert (graph.edge_index[1][1:] >= graph.edge_index[1][:-1]).all()


def test_bad_arguments_raise():
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="query"):
        attention_graph(q[0], q)
    with pytest.raises(ValueError, match="threshold"):
        attention_graph(q, q, threshold=1.5)
    with pytest.raises(ValueError, match="top_k"):
        attention_graph(q, q, top_k=0)
    with pytest.raises(ValueError, match="reduce_heads"):
        attention_graph(q, q, reduce_heads="max")
    with pytest.raises(ValueError, match="multiple"):
        attention_graph(torch.randn(1, 3, 3, 4), torch.randn(1, 2, 3, 4))


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_collected_graphs_equal_eager_attention_probabilities(family):
    torch.manual_seed(0)
    if family == "bert":
        config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, vocab_size=50)
        cls = transformers.BertModel
        mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    else:
        config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, intermediate_size=64, vocab_size=50)
        cls = transformers.LlamaModel
        mask = torch.tensor([[1] * 6, [0] * 2 + [1] * 4])           # left padding
    inputs = {"input_ids": torch.randint(0, 50, (2, 6)), "attention_mask": mask}
    model = cls(config).eval()
    eager = cls(copy.deepcopy(config)).eval()
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        probs = eager(**inputs, output_attentions=True).attentions
    before = model.config._attn_implementation
    graphs = collect_attention_graphs(model, inputs)
    assert len(graphs) == 2 and model.config._attn_implementation == before != "eager"   # restored
    valid = mask.bool()
    for graph, layer_probs in zip(graphs, probs):
        expected = layer_probs * (valid[:, None, :, None] & valid[:, None, None, :])   # padding rows dropped
        torch.testing.assert_close(_dense(graph, 2, 6, 6), expected, rtol=1e-5, atol=1e-6)
    top = collect_attention_graphs(model, inputs, top_k=2)
    assert (top[0].in_degree() <= 2 * 4).all() and top[0].num_edges < graphs[0].num_edges
