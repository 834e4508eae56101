"""AttentionGraph constructors, orientation, conversions."""
import networkx as nx
import pytest
import torch
from torch_geometric.data import Batch, Data

import graphattn as ga


EI = torch.tensor([[0, 2, 1, 3], [1, 1, 0, 2]])  # 0->1, 2->1, 1->0, 3->2


def test_to_dense_is_attention_mask_orientation():
    g = ga.AttentionGraph(EI, 4)
    dense = g.to_dense()
    assert dense.shape == (4, 4) and dense.dtype == torch.bool
    assert dense[1, 0] and dense[1, 2] and dense[0, 1] and dense[2, 3] and dense.sum() == 4


def test_from_edge_index_infers_sizes_and_bipartite():
    g = ga.AttentionGraph.from_edge_index(EI)
    assert (g.num_src_nodes, g.num_dst_nodes, g.num_edges) == (4, 4, 4)
    b = ga.AttentionGraph.from_edge_index(torch.tensor([[0, 4], [1, 0]]), num_dst_nodes=2)
    assert (b.num_src_nodes, b.num_dst_nodes) == (5, 2) and b.is_bipartite
    assert b.to_dense().shape == (2, 5)
    assert torch.equal(b.edge_index, torch.tensor([[0, 4], [1, 0]]))


def test_from_data_and_batch():
    data = Data(edge_index=EI, num_nodes=5)
    g = ga.AttentionGraph.from_data(data)
    assert g.num_src_nodes == 5 and torch.equal(g.edge_index, EI)
    batch = Batch.from_data_list([data, Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2)])
    gb = ga.AttentionGraph.from_data(batch)
    assert gb.num_src_nodes == 7 and gb.num_edges == 5


def test_from_sparse_coo_csr_and_weights():
    dense = torch.zeros(3, 4)
    dense[0, 1], dense[2, 3], dense[2, 0] = 0.5, 2.0, 1.0
    for adj in (dense.to_sparse(), dense.to_sparse_csr()):
        g = ga.AttentionGraph.from_sparse(adj)
        assert (g.num_dst_nodes, g.num_src_nodes) == (3, 4)
        assert torch.equal(g.to_dense(), dense != 0)
        w = torch.zeros(3, 4)
        w[g.edge_index[1], g.edge_index[0]] = g.edge_weight
        torch.testing.assert_close(w, dense)
    with pytest.raises(TypeError, match="adj"):
        ga.AttentionGraph.from_sparse(dense)


def test_from_networkx_directed_and_undirected():
    dg = nx.DiGraph([("a", "b"), ("b", "c")])
    g = ga.AttentionGraph.from_networkx(dg)
    assert g.edge_index.tolist() == [[0, 1], [1, 2]]
    ug = nx.Graph()
    ug.add_edge(0, 1, w=3.0)
    ug.add_edge(1, 1, w=1.0)
    g = ga.AttentionGraph.from_networkx(ug, weight="w")
    assert sorted(map(tuple, g.edge_index.t().tolist())) == [(0, 1), (1, 0), (1, 1)]
    assert sorted(g.edge_weight.tolist()) == [1.0, 3.0, 3.0]


class _FakeDGLBlock:
    """Duck-typed stand-in for a DGL message-flow block (dgl is not a dependency)."""

    def edges(self):
        return torch.tensor([0, 3, 4]), torch.tensor([1, 0, 1])

    def num_src_nodes(self):
        return 5

    def num_dst_nodes(self):
        return 2


def test_from_dgl_duck_typed():
    g = ga.AttentionGraph.from_dgl(_FakeDGLBlock())
    assert (g.num_src_nodes, g.num_dst_nodes) == (5, 2)
    assert g.edge_index.tolist() == [[0, 3, 4], [1, 0, 1]]


def test_full_per_graph_block_diagonal():
    batch = torch.tensor([0, 0, 0, 1, 2, 2])
    g = ga.AttentionGraph.full_per_graph(batch)
    expected = torch.block_diag(torch.ones(3, 3), torch.ones(1, 1), torch.ones(2, 2)).bool()
    assert torch.equal(g.to_dense(), expected) and g.num_edges == 14
    assert torch.equal(g.csr.perm, torch.arange(14))
    assert ga.AttentionGraph.full_per_graph(batch).csr is g.csr          # cached on the batch
    with pytest.raises(ValueError, match="sorted"):
        ga.AttentionGraph.full_per_graph(torch.tensor([1, 0]))
    empty_graph_in_middle = ga.AttentionGraph.full_per_graph(torch.tensor([0, 2]), num_graphs=3)
    assert empty_graph_in_middle.num_edges == 2


def test_edge_order_roundtrip_and_to():
    g = ga.AttentionGraph(EI, 4)
    x = torch.arange(4.0)
    assert torch.equal(g.to_user_order(g.to_csr_order(x)), x)
    moved = g.to("cpu")
    assert torch.equal(moved.edge_index, EI) and "num_edges=4" in repr(moved)


def test_raw_edge_index_builds_one_graph_per_tensor():
    """Layers given the same edge_index share one CSR (and transpose); an in-place change rebuilds it."""
    from graphattn.graph import cached_graph

    ei = torch.tensor([[0, 2, 1, 3, 3], [1, 1, 0, 2, 0]])
    first = cached_graph(ei, 4)
    csr = first.csr
    csr.transpose()
    assert cached_graph(ei, 4).csr is csr and cached_graph(ei, 4).csr.transpose() is csr.transpose()
    assert cached_graph(ei, 5).csr is not csr                      # other node counts: another graph
    assert cached_graph(ei.clone(), 4).csr is not csr              # another tensor: another graph
    ei[0, 0] = 3
    rebuilt = cached_graph(ei, 4).csr
    assert rebuilt is not csr and 3 in rebuilt.col[rebuilt.row == 1].tolist()
    with pytest.raises(ValueError, match="num_src_nodes"):
        cached_graph(torch.tensor([[7], [0]]), 4)                  # validated on first build


@pytest.mark.parametrize("layers", [[ga.GraphAttnConv] * 4, [ga.GATConv, ga.GATv2Conv, ga.GATConv]],
                         ids=["graph_attn_conv", "gat_self_loops"])
def test_layer_stack_builds_the_graph_once(monkeypatch, layers):
    """The GAT layers share one self-loop graph per edge_index (graphattn.graph.self_loop_graph)."""
    import graphattn.graph as graph_module

    builds = []
    original = graph_module.build_csr
    monkeypatch.setattr(graph_module, "build_csr", lambda *a, **kw: builds.append(1) or original(*a, **kw))
    convs = torch.nn.ModuleList(layer(8, 4, heads=2) for layer in layers)
    x, ei = torch.randn(6, 8), torch.randint(0, 6, (2, 20))
    for _ in range(2):
        h = x
        for conv in convs:
            h = conv(h, ei)
        h.sum().backward()
    assert len(builds) == 1


def test_from_sorted_rows_checks_order_and_skips_the_sort():
    g = ga.AttentionGraph.from_sorted_rows(torch.tensor([0, 0, 1, 3]), torch.tensor([2, 1, 0, 2]), 3, 4)
    assert g.csr.eid is None and g.csr.rowptr.tolist() == [0, 2, 3, 3, 4]
    assert torch.equal(g.edge_index, torch.tensor([[2, 1, 0, 2], [0, 0, 1, 3]]))
    with pytest.raises(ValueError, match="sorted"):
        ga.AttentionGraph.from_sorted_rows(torch.tensor([1, 0]), torch.tensor([0, 0]), 2)
    with pytest.raises(ValueError, match="num_src_nodes"):
        ga.AttentionGraph.from_sorted_rows(torch.tensor([0, 1]), torch.tensor([0, 5]), 2)


def test_self_loop_graph_is_pygs_order_and_cached():
    """PyG's remove_self_loops + add_self_loops (the input's non-loop edges in order, then one loop per node
    i < min(N_src, N_dst)), built once per edge_index tensor; an in-place change rebuilds it."""
    from torch_geometric.utils import add_self_loops, remove_self_loops

    from graphattn.graph import self_loop_graph

    ei = torch.tensor([[0, 2, 2, 1, 3, 3, 4], [1, 2, 1, 1, 0, 3, 2]])
    loops = self_loop_graph(ei, 5, 4)
    expected, _ = add_self_loops(remove_self_loops(ei)[0], num_nodes=4)
    assert torch.equal(loops.graph.edge_index, expected)
    assert loops.kept.tolist() == [0, 2, 4, 6] and loops.num_kept == 4
    assert (loops.graph.num_src_nodes, loops.graph.num_dst_nodes) == (5, 4)
    csr = loops.graph.csr
    assert self_loop_graph(ei, 5, 4).graph.csr is csr and self_loop_graph(ei, 5, 4).kept is loops.kept
    assert self_loop_graph(ei, 5, 5).graph.num_edges == 9                   # other node counts: another graph
    no_loops = self_loop_graph(ei[:, [0, 2, 4]], 5)
    assert no_loops.kept is None and no_loops.graph.edge_index[:, :3].tolist() == ei[:, [0, 2, 4]].tolist()
    ei[0, 1] = 0                                                            # (2, 2) -> (0, 2): kept now
    rebuilt = self_loop_graph(ei, 5, 4)
    assert rebuilt.graph.csr is not csr and rebuilt.kept.tolist() == [0, 1, 2, 4, 6]
    with pytest.raises(ValueError, match="num_src_nodes"):
        self_loop_graph(torch.tensor([[7], [0]]), 4)
    empty = self_loop_graph(torch.zeros(2, 0, dtype=torch.long), 0)
    assert empty.graph.num_edges == 0 and empty.num_kept == 0
