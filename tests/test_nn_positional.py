"""Positional encodings and the virtual-node transform (graphattn.data.positional / virtual_node)."""
import tracemalloc

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from graphattn.data.positional import AddLapPE, AddRWSE, laplacian_pe, random_sign_flip
from graphattn.data.virtual_node import AddVirtualNode


def _dense_laplacian(edge_index, n):
    a = torch.zeros(n, n, dtype=torch.double)
    a[edge_index[0], edge_index[1]] = 1
    a = ((a + a.t()) > 0).double()
    a.fill_diagonal_(0)
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    return torch.eye(n, dtype=torch.double) - inv[:, None] * a * inv[None, :]


def test_lap_pe_dense_path_is_eigenvectors():
    ei = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 5, 3]])
    pe, vals = laplacian_pe(ei, 6, k=3)
    lap = _dense_laplacian(ei, 6)
    ref = torch.linalg.eigvalsh(lap)[1:4]
    torch.testing.assert_close(vals.double(), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(lap @ pe.double(), pe.double() * vals.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(pe.t() @ pe, torch.eye(3), atol=1e-5, rtol=0)
    # deterministic sign: the largest entry of every eigenvector is positive
    idx = pe.abs().argmax(0)
    assert (pe[idx, torch.arange(3)] > 0).all()


def test_lap_pe_small_graph_padded():
    pe, vals = laplacian_pe(torch.tensor([[0, 1], [1, 0]]), 2, k=4)
    assert pe.shape == (2, 4) and torch.equal(pe[:, 1:], torch.zeros(2, 3))
    pe1, _ = laplacian_pe(torch.zeros(2, 0, dtype=torch.long), 1, k=2)
    assert torch.equal(pe1, torch.zeros(1, 2))


def test_lap_pe_20k_nodes_sparse(monkeypatch):
    """20k nodes through eigsh; no dense N x N array (would be 3.2 GB) is ever allocated."""
    def no_dense(*args, **kwargs):
        raise AssertionError("dense eigensolver used")
    monkeypatch.setattr(np.linalg, "eigh", no_dense)
    n = 20_000
    gen = torch.Generator().manual_seed(0)
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    ei = torch.cat([torch.randint(0, n, (2, 3 * n), generator=gen), ring], 1)
    tracemalloc.start()
    pe, vals = laplacian_pe(ei, n, k=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 * 2 ** 20, f"peak {peak / 2**20:.0f} MiB"
    assert pe.shape == (n, 4) and (vals > 0).all() and (vals[1:] >= vals[:-1] - 1e-6).all()
    from graphattn.data.positional import _normalized_laplacian
    lap = _normalized_laplacian(ei, n)
    resid = lap @ pe.double().numpy() - pe.double().numpy() * vals.double().numpy()
    assert np.abs(resid).max() < 1e-4


def test_sign_flip_and_transforms():
    pe = torch.randn(5, 3)
    flipped = random_sign_flip(pe)
    assert torch.equal(flipped.abs(), pe.abs())
    assert torch.equal(torch.sign(flipped / pe)[0].expand(5, 3), torch.sign(flipped / pe))
    data = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    data = AddRWSE(4)(AddLapPE(2)(data))
    assert data.lap_pe.shape == (3, 2) and data.rwse.shape == (3, 4)
    torch.testing.assert_close(data.rwse[:, 1], torch.tensor([0.5, 1.0, 0.5]))   # return after 2 steps
    assert repr(AddLapPE(8)) != repr(AddLapPE(4))                                 # cache key
    with pytest.raises(ValueError, match="k must"):
        AddLapPE(0)


def test_virtual_node_transform_categories():
    data = Data(x=torch.tensor([[5, 0, 3, 5, 0, 0, 1, 0, 0], [7, 0, 4, 5, 0, 0, 2, 0, 0]]),
                edge_index=torch.tensor([[0, 1], [1, 0]]), edge_attr=torch.tensor([[0, 0, 0], [0, 0, 0]]),
                lap_pe=torch.randn(2, 3), num_nodes=2)
    out = AddVirtualNode(num_virtual_nodes=2)(data)
    assert out.num_nodes == 4 and out.x.shape == (4, 9)
    assert out.x[2].tolist() == [119, 5, 12, 12, 10, 6, 6, 2, 2]          # own atom category per column
    assert out.edge_index.size(1) == 2 + 2 * 2 * 2
    assert (out.edge_attr[2:] == torch.tensor([5, 6, 2])).all()          # own bond category
    assert out.virtual_mask.tolist() == [False, False, True, True]
    assert torch.equal(out.lap_pe[2:], torch.zeros(2, 3))
    vn_edges = out.edge_index[:, 2:]
    for v in (2, 3):                                                     # linked both ways to every node
        assert {(0, v), (1, v), (v, 0), (v, 1)} <= set(map(tuple, vn_edges.t().tolist()))
    with pytest.raises(ValueError, match="integer"):
        AddVirtualNode()(Data(x=torch.randn(2, 9), edge_index=torch.zeros(2, 0, dtype=torch.long)))


def test_virtual_node_transform_edge_types_as_pyg():
    """PyG's VirtualNode transform: the old edge types stay, node -> virtual edges get max + 1, back max + 2;
    edge weights of the new edges are 1."""
    from torch_geometric.transforms import VirtualNode

    data = Data(x=torch.tensor([[5, 0, 3, 5, 0, 0, 1, 0, 0]] * 3), edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]),
                edge_type=torch.tensor([0, 2, 1]), edge_weight=torch.tensor([0.5, 0.25, 2.0]), num_nodes=3)
    ours = AddVirtualNode()(data.clone())
    pyg = VirtualNode()(data.clone())
    assert torch.equal(ours.edge_index, pyg.edge_index)
    assert torch.equal(ours.edge_type, pyg.edge_type)
    assert torch.equal(ours.edge_weight, pyg.edge_weight)
    plain = AddVirtualNode()(Data(x=data.x, edge_index=data.edge_index, num_nodes=3))
    assert plain.edge_type.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
