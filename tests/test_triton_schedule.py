"""Degree-adaptive work plans and the launch-configuration table (no kernels run)."""
import torch

import sparse_kernels as sk
from sparse_kernels.triton import schedule


def test_plan_covers_every_edge_once_longest_first():
    deg = torch.tensor([0, 3, 40, 1, 0, 17, 16])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), deg.cumsum(0)])
    plan = schedule.build_plan(ptr, chunk=16)
    node, start, end, slot = plan.items.long().unbind(1)
    assert plan.items.dtype == torch.int32
    lengths = end - start
    assert (lengths[:-1] >= lengths[1:]).all()  # longest first
    covered = torch.zeros(int(ptr[-1]), dtype=torch.long)
    for n, s, e in zip(node.tolist(), start.tolist(), end.tolist()):
        assert ptr[n] <= s <= e <= ptr[n + 1] and e - s <= 16
        covered[s:e] += 1
    assert (covered == 1).all()
    assert sorted(node.tolist()) == [0, 1, 2, 2, 2, 3, 4, 5, 5, 6]  # every node, empty ones too
    # split nodes 2 (3 chunks) and 5 (2 chunks) own consecutive slots; the others write directly
    assert plan.splits.tolist() == [[2, 0, 3], [5, 3, 2]] and plan.num_slots == 5
    assert sorted(slot[node == 2].tolist()) == [0, 1, 2] and (slot[(node != 2) & (node != 5)] == -1).all()
    assert plan.max_degree == 40 and plan.num_edges == 77


def test_plan_is_cached_on_the_offsets():
    csr = sk.build_csr(torch.randint(0, 50, (2, 300)), 50, 50)
    first = schedule.plan_for(csr.rowptr)
    assert schedule.plan_for(csr.rowptr) is first
    with schedule.chunk_override(8):
        assert schedule.plan_for(csr.rowptr).chunk == 8
    assert schedule.plan_for(csr.rowptr) is first
    with torch.inference_mode():  # inference tensors have no version counter
        rowptr = sk.build_csr(torch.randint(0, 50, (2, 300)), 50, 50).rowptr
        assert schedule.plan_for(rowptr) is schedule.plan_for(rowptr)
    empty = schedule.build_plan(torch.zeros(1, dtype=torch.long), chunk=64)
    assert empty.items.shape == (0, 4) and empty.splits.shape == (0, 3)


def test_default_chunk_and_launch_table(monkeypatch):
    assert schedule.default_chunk(65536, 2_100_000) == 128  # mean degree 32: rows never split
    assert schedule.default_chunk(1000, 30_000) == 64  # few rows: short chunks for parallelism
    assert schedule.default_chunk(100_000, 10 ** 8) == 1024
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    for width in (16, 32, 64, 128, 256):
        for mean_degree in (2.0, 16.0, 300.0):
            cfg = schedule.launch_config(width, 8, mean_degree)
            block_d = 1 << (width - 1).bit_length()
            assert cfg["BLOCK_H"] * block_d <= 1024
            assert cfg["BLOCK_E"] * cfg["BLOCK_H"] * block_d <= 8192 or cfg["BLOCK_E"] == 4
    assert schedule.launch_config(64, 8, 32.0) == {"BLOCK_E": 16, "BLOCK_H": 8, "num_warps": 8}
    assert schedule.launch_config(64, 8, 3.0) == {"BLOCK_E": 4, "BLOCK_H": 8, "num_warps": 4}
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert schedule.launch_config(64, 8, 32.0) == {"BLOCK_E": 8, "BLOCK_H": 8, "num_warps": 4}
