"""Positions (RoPE, ALiBi, learned relative bias, -log n), normalisers on sequences, and
SeqGraphAttention / SeqGraphTransformer (SDPA path = graph path, packed batch = separate runs)."""
import pytest
import torch
from helpers import dense_attention

from graphattn import graph_attention
from graphattn.functional import explain
from graphattn.seq import (Causal, Full, GlobalTokens, KMeansRouting, RelativePositionBias, RotaryEmbedding,
                           SeqGraphAttention, SeqGraphTransformer, SlidingWindow, TopK, alibi_bias, alibi_slopes,
                           causal, length_bias, sequence_positions, sliding_window)


def _qkv(n, heads=2, d=6):
    return tuple(torch.randn(n, heads, d, dtype=torch.float64, requires_grad=True) for _ in range(3))


def _grads_close(out, ref, inputs):
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, inputs, g, retain_graph=True),
                    torch.autograd.grad(ref, inputs, g, retain_graph=True)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_positions_and_rope_relative_property():
    assert sequence_positions([3, 0, 2]).tolist() == [0, 1, 2, 0, 1]
    rope = RotaryEmbedding(6)
    q, k = torch.randn(5, 1, 6, dtype=torch.float64), torch.randn(5, 1, 6, dtype=torch.float64)
    pos = torch.arange(5)
    s1 = torch.einsum("ihd,jhd->ij", rope(q, pos), rope(k, pos))
    s2 = torch.einsum("ihd,jhd->ij", rope(q, pos + 17), rope(k, pos + 17))
    torch.testing.assert_close(s1, s2)
    with pytest.raises(ValueError):
        RotaryEmbedding(5)


def test_alibi_and_learned_bias_match_dense_biased_sdpa():
    n, heads = 23, 4
    graph = sliding_window(n, 5, causal=True) | GlobalTokens(2, causal=True).graph(n)
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(6).shape == (6,)
    bias = alibi_bias(graph, heads, torch.float64)
    src, dst = graph.edge_index
    torch.testing.assert_close(bias[:, 1], -(dst - src).abs().double() * alibi_slopes(heads)[1].double())
    q, k, v = _qkv(n, heads)
    _grads_close(graph_attention(q, k, v, graph, bias=bias), dense_attention(q, k, v, graph.edge_index, bias),
                 (q, k, v))
    rel = RelativePositionBias(heads, max_distance=3)
    torch.nn.init.normal_(rel.weight)
    b = rel(graph)
    assert torch.equal(b[(dst - src) > 3], rel.weight[6].expand(int(((dst - src) > 3).sum()), heads))
    b.sum().backward()
    assert rel.weight.grad is not None


@pytest.mark.parametrize("normalizer", ["sigmoid", "softplus"])
def test_sequence_normalisers_match_dense(normalizer):
    lengths = [9, 14]
    graph = (SlidingWindow(3, causal=True) | GlobalTokens(1, causal=True)).batch(lengths)
    q, k, v = _qkv(23)
    bias = length_bias(graph, lengths, 2, torch.float64) if normalizer == "sigmoid" else None
    if bias is not None:
        assert torch.allclose(bias[graph.edge_index[1] < 9], -torch.log(torch.tensor(9.0)).double())
    out = graph_attention(q, k, v, graph, bias=bias, normalizer=normalizer)
    ref = dense_attention(q, k, v, graph.edge_index, bias, normalizer=normalizer)
    _grads_close(out, ref, (q, k, v))


@pytest.mark.parametrize("pattern", [Causal(), Full()], ids=repr)
def test_attention_layer_sdpa_path_equals_graph_path(pattern):
    layer = SeqGraphAttention(12, 3, pattern).double()
    x = torch.randn(19, 12, dtype=torch.float64, requires_grad=True)
    fused = layer(x)
    layer.use_sdpa = False
    _grads_close(layer(x), fused, (x,))


@pytest.mark.parametrize("pattern", [SlidingWindow(4, causal=True) | GlobalTokens(2, causal=True), Causal(),
                                     TopK(5, causal=True), KMeansRouting(16, 3, causal=True),
                                     KMeansRouting(16, 3, causal=True) | SlidingWindow(2, causal=True)], ids=repr)
def test_packed_batch_equals_separate_sequences(pattern):
    model = SeqGraphTransformer(50, 16, 2, 2, pattern, relative_bias="alibi").double().eval()
    tokens = torch.randint(0, 50, (31,))
    packed = model(tokens, [12, 19])
    separate = torch.cat([model(tokens[:12]), model(tokens[12:])])
    torch.testing.assert_close(packed, separate, atol=1e-9, rtol=1e-9)
    assert model(tokens.view(1, 31)).shape == (1, 31, 50)


def test_causal_decoder_does_not_see_the_future_and_trains():
    model = SeqGraphTransformer(30, 16, 2, 2, SlidingWindow(3, causal=True) | GlobalTokens(1, causal=True),
                                positions="learned", max_len=40, normalizer="sigmoid", relative_bias="learned")
    tokens = torch.randint(0, 30, (25,))
    out = model(tokens)
    changed = tokens.clone()
    changed[20] = (changed[20] + 1) % 30
    torch.testing.assert_close(model(changed)[:20], out[:20])
    loss = torch.nn.functional.cross_entropy(out[:-1], tokens[1:])
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(0, 30, (41,)))


def test_model_argument_errors_and_cpu_keeps_csr_path():
    with pytest.raises(ValueError, match="divide"):
        SeqGraphAttention(10, 3, Causal())
    with pytest.raises(TypeError, match="pattern"):
        SeqGraphAttention(12, 3, "causal")
    with pytest.raises(ValueError, match="positions"):
        SeqGraphTransformer(10, 8, 1, 2, Causal(), positions="sinusoid")
    q = torch.randn(70, 2, 16, dtype=torch.float16)
    assert explain(q, q, q, causal(70))["path"] == "csr"
