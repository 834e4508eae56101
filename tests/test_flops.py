"""graphattn.utils.count_flops: attention per edge and head, projections, MLPs, message passing."""
import pytest
import torch

from graphattn.graph import AttentionGraph
from graphattn.models import GPS, GraphTransformer
from graphattn.nn.multihead_attention import MultiheadGraphAttention
from graphattn.sparsify import SparseLinear
from graphattn.bench.gtsp_export import random_molecules
from graphattn.utils import count_flops, time_inference


def test_multihead_attention_counts_edges_heads_and_projections():
    batch = torch.tensor([0, 0, 0, 1, 1, 2])
    graph = AttentionGraph.full_per_graph(batch)                      # 9 + 4 + 1 = 14 edges
    attn = MultiheadGraphAttention(12, 3)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attn

        def forward(self, x):
            return self.attn(x, graph)

    flops = count_flops(Wrap(), {"x": torch.randn(6, 12)})
    assert flops.attention == 14 * 3 * (4 * 4 + 3)
    assert flops.attention_proj == (2 * 6 * 36 * 12 + 6 * 36) + (2 * 6 * 12 * 12 + 6 * 12)
    assert flops.linear == flops.message_passing == flops.masking == 0
    attn.prune_heads(torch.tensor([1]))
    flops = count_flops(Wrap(), {"x": torch.randn(6, 12)})
    assert flops.attention == 14 * 1 * (4 * 4 + 3)
    assert flops.attention_proj == (2 * 6 * 12 * 12 + 6 * 12) + (2 * 6 * 4 * 12 + 6 * 12)


def test_gps_counts_per_graph_full_attention_and_restores_mode():
    data = random_molecules((3, 8, 5), generator=torch.Generator().manual_seed(0))
    model = GPS(16, 2, num_layers=2, heads=4, node_encoder=8, edge_encoder=4, local_conv="gine").train()
    flops = count_flops(model, data)
    assert model.training
    assert flops.attention == 2 * (9 + 64 + 25) * 4 * (4 * 4 + 3)
    assert flops.message_passing == 2 * data.num_edges * 16 * 3
    n, e = data.num_nodes, data.num_edges
    ffn = (2 * n * 16 * 32 + n * 32) + (2 * n * 32 * 16 + n * 16)
    gine = 2 * (2 * n * 16 * 16 + n * 16)
    encoders = (2 * n * 8 * 16 + n * 16) + (2 * e * 4 * 16 + e * 16)
    head = 2 * 3 * 16 * 2 + 3 * 2
    assert flops.linear == 2 * (ffn + gine) + encoders + head
    assert flops.attention_proj == 2 * ((2 * n * 16 * 48 + n * 48) + (2 * n * 16 * 16 + n * 16))
    assert flops.total == (flops.attention + flops.attention_proj + flops.linear + flops.message_passing)


def test_graph_transformer_counts_its_edges():
    data = random_molecules((4, 6), generator=torch.Generator().manual_seed(0))
    model = GraphTransformer(16, 1, num_layers=2, heads=2, node_encoder=8, edge_encoder=4)
    flops = count_flops(model, data)
    assert flops.attention == 2 * data.num_edges * 2 * (4 * 8 + 3 + 8)


def test_sparse_weights_count_their_nonzeros():
    linear = torch.nn.Linear(10, 4)
    with torch.no_grad():
        linear.weight[:, :5] = 0.0
    dense = count_flops(torch.nn.Sequential(linear), {"input": torch.randn(3, 10)})
    sparse = count_flops(torch.nn.Sequential(SparseLinear(linear)), {"input": torch.randn(3, 10)})
    assert dense.linear == sparse.linear == 2 * 3 * 20 + 3 * 4


def test_bad_input_and_timing():
    with pytest.raises(TypeError, match="model"):
        count_flops(object(), {})
    model = torch.nn.Linear(4, 2)
    assert time_inference(model, [{"input": torch.randn(3, 4)}], repeats=2) > 0
    with pytest.raises(ValueError, match="repeats"):
        time_inference(model, [], repeats=0)
