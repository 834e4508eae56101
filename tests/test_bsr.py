"""BSR layout (tile occupancy, partial masks) and the BSR Triton kernels in the interpreter."""
import os

import pytest
import torch

from sparse_kernels import attention_with_stats, build_csr
from sparse_kernels.bsr import BSR, bsr_from_csr, select_bsr

needs_interpreter = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") != "1",
                                       reason="CPU tests of the kernels need TRITON_INTERPRET=1")


def _window_csr(n, w, extra=()):
    i = torch.arange(n)
    dense = (i[:, None] - i[None, :]).abs() <= w
    for t in extra:
        dense[:, t] = True
        dense[t, :] = True
    dst, src = dense.nonzero(as_tuple=True)
    perm = torch.randperm(dst.numel())           # user order need not be sorted
    return build_csr(torch.stack([src[perm], dst[perm]]), n, n), dense


@pytest.mark.parametrize("n,bm,bn", [(40, 16, 16), (64, 16, 32), (33, 32, 16)])
def test_layout_roundtrip_and_classification(n, bm, bn):
    csr, dense = _window_csr(n, 9, extra=(0, 5))
    layout = bsr_from_csr(csr, bm, bn)
    assert isinstance(layout, BSR)
    assert torch.equal(layout.to_dense(), dense)
    assert layout.num_edges == int(dense.sum()) and not layout.has_duplicates
    # full tiles are exactly the interior tiles whose every entry is an edge
    nrb = layout.block_rowptr.numel() - 1
    rb = torch.repeat_interleave(torch.arange(nrb), layout.block_rowptr.diff())
    for t in range(layout.num_tiles):
        r, c = int(rb[t]), int(layout.block_col[t])
        tile = dense[r * bm:(r + 1) * bm, c * bn:(c + 1) * bn]
        is_full = tile.shape == (bm, bn) and bool(tile.all())
        assert (int(layout.mask_index[t]) < 0) == is_full
        assert bool(tile.any())
    # within a row block: full tiles first (up to block_split), each class ascending
    for r in range(nrb):
        a, s, b = int(layout.block_rowptr[r]), int(layout.block_split[r]), int(layout.block_rowptr[r + 1])
        assert bool((layout.mask_index[a:s] < 0).all()) and bool((layout.mask_index[s:b] >= 0).all())
        for lo, hi in ((a, s), (s, b)):
            assert bool((layout.block_col[lo:hi].diff() > 0).all())
    # the transpose holds the same tiles grouped by column block
    ncb = layout.block_colptr.numel() - 1
    cb = torch.repeat_interleave(torch.arange(ncb), layout.block_colptr.diff())
    assert sorted(zip(rb.tolist(), layout.block_col.tolist(), layout.mask_index.tolist())) == \
        sorted(zip(layout.tile_row_t.tolist(), cb.tolist(), layout.mask_index_t.tolist()))
    for c in range(ncb):
        a, s, b = int(layout.block_colptr[c]), int(layout.block_split_t[c]), int(layout.block_colptr[c + 1])
        assert bool((layout.mask_index_t[a:s] < 0).all()) and bool((layout.mask_index_t[s:b] >= 0).all())


def test_duplicates_and_selection():
    csr, dense = _window_csr(48, 20)
    assert select_bsr(csr, (16, 16)) is not None
    ei = torch.stack([csr.col, csr.row])
    dup = build_csr(torch.cat([ei, ei[:, :3]], 1), 48, 48)
    assert bsr_from_csr(dup, 16, 16).has_duplicates
    assert select_bsr(dup, (16, 16)) is None
    sparse_random = build_csr(torch.randint(0, 256, (2, 300)), 256, 256)
    assert select_bsr(sparse_random, (16, 16)) is None


def test_empty_graph_layout():
    csr = build_csr(torch.empty(2, 0, dtype=torch.long), 5, 7)
    layout = bsr_from_csr(csr, 16, 16)
    assert layout.num_tiles == 0 and layout.block_rowptr.tolist() == [0, 0]
    assert select_bsr(csr, (16, 16)) is None


@pytest.mark.interpreter
@needs_interpreter
@pytest.mark.parametrize("n,d,dv,extra", [(70, 16, 16, (0, 3)), (53, 24, 8, ())])
def test_bsr_kernel_matches_reference(n, d, dv, extra):
    from sparse_kernels.triton.bsr import bsr_attention_with_stats

    csr, dense = _window_csr(n, 20, extra=extra)
    dense[40, :] = False                           # a row with no edge: zero output, lse = +inf
    dst, src = dense.nonzero(as_tuple=True)
    csr = build_csr(torch.stack([src, dst]), n, n)
    layout = bsr_from_csr(csr, 16, 16)
    assert layout.num_full_tiles > 0 and layout.masks.size(0) > 0
    h = 2
    q, k = (torch.randn(n, h, d, requires_grad=True) for _ in range(2))
    v = torch.randn(n, h, dv, requires_grad=True)
    out, lse = bsr_attention_with_stats(q, k, v, layout, scale=0.3)
    g = torch.randn_like(out)
    dq, dk, dv_ = torch.autograd.grad(out, (q, k, v), g)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref, ref_lse = attention_with_stats(q64, k64, v64, csr, scale=0.3)
    rq, rk, rv = torch.autograd.grad(ref, (q64, k64, v64), g.double())
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert torch.isinf(lse[40]).all() and (out[40] == 0).all()
    torch.testing.assert_close(lse.double()[dense.any(1)], ref_lse[dense.any(1)], atol=1e-5, rtol=1e-5)
    for a, b in ((dq, rq), (dk, rk), (dv_, rv)):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@pytest.mark.interpreter
@needs_interpreter
def test_bsr_kernel_bipartite_and_fp16():
    from sparse_kernels.triton.bsr import bsr_attention

    n_dst, n_src, h = 37, 53, 1
    i, j = torch.arange(n_dst)[:, None], torch.arange(n_src)[None, :]
    dense = ((j - i).abs() <= 20) | (j >= 48)
    dst, src = dense.nonzero(as_tuple=True)
    csr = build_csr(torch.stack([src, dst]), n_src, n_dst)
    layout = bsr_from_csr(csr, 16, 16)
    q = torch.randn(n_dst, h, 16, requires_grad=True)
    k, v = (torch.randn(n_src, h, 16, requires_grad=True) for _ in range(2))
    out = bsr_attention(q, k, v, layout)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    leaves = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref = attention_with_stats(*leaves, csr)[0]
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, torch.autograd.grad(ref.sum(), leaves)):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)
    half = bsr_attention(q.detach().half(), k.detach().half(), v.detach().half(), layout)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.double(), ref.detach(), atol=2e-2, rtol=2e-2)
    with pytest.raises(TypeError, match="dtype"):
        bsr_attention(q.double(), k.double(), v.double(), layout)
