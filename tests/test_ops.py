"""The unfused engine ops (sddmm, edge_softmax, spmm) and the CSR, against plain references."""
import pytest
import torch

import sparse_kernels as sk
from helpers import masked_weights, random_graph
from sparse_kernels import reference

DT = torch.float64


def _graph(seed=0, num_src=15, num_dst=12, num_edges=70, **kw):
    ei = random_graph(num_src, num_dst, num_edges, seed=seed, **kw)
    return ei, sk.build_csr(ei, num_src, num_dst)


def test_csr_layout_and_transpose():
    ei, csr = _graph(hub=True, isolated=2)
    assert csr.rowptr.shape == (13,) and int(csr.rowptr[-1]) == ei.size(1)
    assert torch.equal(csr.col, ei[0, csr.perm]) and torch.equal(csr.row, ei[1, csr.perm])
    assert (csr.row[1:] >= csr.row[:-1]).all()
    assert torch.equal(csr.degree(), torch.bincount(ei[1], minlength=12))
    csc = csr.transpose()
    assert csr.transpose() is csc
    assert (csc.col[1:] >= csc.col[:-1]).all()
    assert torch.equal(csc.row, csr.row[csc.perm]) and torch.equal(csc.col, csr.col[csc.perm])
    assert torch.equal(csc.colptr[1:] - csc.colptr[:-1], torch.bincount(ei[0], minlength=15))


def test_csr_stable_within_row():
    ei = torch.tensor([[3, 1, 2, 0], [1, 1, 0, 1]])
    csr = sk.build_csr(ei, 4, 2)
    assert csr.perm.tolist() == [2, 0, 1, 3]


def test_sddmm_spmm_edge_softmax_values_in_user_order():
    ei, csr = _graph()
    assert csr.eid is not None                     # shuffled edges: CSR order differs from the user's
    src, dst = ei
    a, b = torch.randn(12, 2, 3, dtype=DT), torch.randn(15, 2, 3, dtype=DT)
    s = sk.sddmm(a, b, csr)
    torch.testing.assert_close(s, (a[dst] * b[src]).sum(-1))
    w = sk.edge_softmax(s, csr)
    dense = torch.zeros(2, 12, 15, dtype=DT)
    dense[:, dst, src] = s.t()
    mask = torch.zeros(12, 15, dtype=torch.bool)
    mask[dst, src] = True
    expected = masked_weights(dense, mask)[:, dst, src].t()
    torch.testing.assert_close(w, expected)
    out = sk.spmm(w, b, csr)
    ref = torch.zeros(12, 2, 3, dtype=DT).index_add_(0, dst, w[..., None] * b[src])
    torch.testing.assert_close(out, ref)


def test_sorted_edges_skip_the_permutation():
    ei = torch.tensor([[2, 0, 1, 1], [0, 0, 1, 2]])
    csr = sk.build_csr(ei, 3, 3)
    assert csr.eid is None and torch.equal(csr.col, ei[0]) and csr.rowptr.tolist() == [0, 2, 3, 4]


@pytest.mark.parametrize("normalizer", ["softmax", "sigmoid", "softplus"])
def test_unfused_gradcheck(normalizer):
    ei, csr = _graph(num_src=7, num_dst=6, num_edges=20, isolated=1)
    a = torch.randn(6, 2, 3, dtype=DT, requires_grad=True)
    b = torch.randn(7, 2, 3, dtype=DT, requires_grad=True)
    v = torch.randn(7, 2, 2, dtype=DT, requires_grad=True)

    def f(a, b, v):
        return sk.spmm(sk.edge_softmax(sk.sddmm(a, b, csr), csr, normalizer), v, csr)

    assert torch.autograd.gradcheck(f, (a, b, v))


def test_fused_equals_unfused():
    ei, csr = _graph(hub=True)
    q, k, v = (torch.randn(n, 2, 4, dtype=DT) for n in (12, 15, 15))
    bias = torch.randn(ei.size(1), 2, dtype=DT)
    for normalizer in sk.NORMALIZERS:
        fused, stat = sk.attention_with_stats(q, k, v, csr, bias, 0.7, normalizer)
        unfused = sk.spmm(sk.edge_softmax(0.7 * sk.sddmm(q, k, csr) + bias, csr, normalizer), v, csr)
        torch.testing.assert_close(fused, unfused)
        assert stat.shape == (12, 2)


def test_reference_chunks_do_not_change_results(monkeypatch):
    ei, csr = _graph(hub=True)
    q, k, v = (torch.randn(n, 2, 4, dtype=DT) for n in (12, 15, 15))
    full = reference.attention_forward(q, k, v, csr.row, csr.col, None, 0.5, "softmax")
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 8)  # one edge per chunk
    chunked = reference.attention_forward(q, k, v, csr.row, csr.col, None, 0.5, "softmax")
    torch.testing.assert_close(full, chunked)


def test_sparse_cpu_path_equals_chunked_path_with_duplicates(monkeypatch):
    monkeypatch.setattr(reference, "SPARSE_MIN_ELEMENTS", 0)
    ei = torch.cat([random_graph(9, 8, 30, hub=True, isolated=1), torch.tensor([[3, 3, 3], [2, 2, 2]])], 1)
    csr = sk.build_csr(ei, 9, 8)
    a, b = torch.randn(8, 2, 5, dtype=DT), torch.randn(9, 2, 5, dtype=DT)
    w = torch.randn(ei.size(1), 2, dtype=DT)
    torch.testing.assert_close(reference.sddmm(a, b, csr.row, csr.col, csr.rowptr),
                               reference.sddmm(a, b, csr.row, csr.col))
    torch.testing.assert_close(reference.spmm(w, b, csr.row, csr.col, 8, csr.rowptr),
                               reference.spmm(w, b, csr.row, csr.col, 8))
    csc = csr.transpose()
    torch.testing.assert_close(reference.spmm(w[csc.perm], a, csc.col, csc.row, 9, csc.colptr),
                               reference.spmm(w, a, csr.col, csr.row, 9))


def test_sddmm_with_more_duplicates_than_matrix_entries(monkeypatch):
    monkeypatch.setattr(reference, "SPARSE_MIN_ELEMENTS", 0)
    ei = torch.tensor([[0, 1, 2, 0, 0, 1, 2, 1, 0, 1, 2, 2], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]])
    csr = sk.build_csr(ei, 3, 3)
    a, b = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    torch.testing.assert_close(sk.sddmm(a, b, csr), (a[ei[1]] * b[ei[0]]).sum(-1))
