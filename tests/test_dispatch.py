"""The engine's dispatcher: one place picks the path (CSR kernels, block-sparse, dense blocks) and the
kernel set (compiled CPU kernels, reference, Triton) per call; registrations add and override them."""
import pytest
import torch

import graphattn as ga
import sparse_kernels as sk
from sparse_kernels import dispatch
from sparse_kernels.dispatch import Features
from graphattn.functional import explain


def _graph():
    return ga.AttentionGraph(torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]]), 3)


def test_cpu_kernels_serve_float_and_reference_the_rest():
    x = torch.randn(3, 2, 4)
    expected = "cpu" if sk.cpu.available() else "reference"
    assert explain(x, x, x, _graph()) == {"path": "csr", "kernel": expected}
    assert explain(x.double(), x.double(), x.double(), _graph())["kernel"] == expected
    assert explain(x.half(), x.half(), x.half(), _graph())["kernel"] == "reference"
    assert dispatch.select_kernels("sddmm", "cpu", Features(torch.float32)).name == "reference"


def test_kernel_override_runs_inside_the_block_only():
    calls = []

    def fwd(*args):
        calls.append(1)
        return sk.ops.REFERENCE_KERNELS["attention_fwd"](*args)

    x = torch.randn(3, 2, 4)
    with dispatch.kernel_override("spy", "cpu", {"attention_fwd": fwd}):
        assert explain(x, x, x, _graph())["kernel"] == "spy"
        out = ga.graph_attention(x, x, x, _graph())
    assert calls == [1]
    assert explain(x, x, x, _graph())["kernel"] != "spy"
    torch.testing.assert_close(out, ga.graph_attention(x, x, x, _graph()))


def test_supports_declines_to_the_next_kernel_set():
    x = torch.randn(3, 2, 4)
    with dispatch.kernel_override("no-dropout", "cpu", {"attention_fwd": None},
                                  supports=lambda op, f: not f.dropout):
        assert explain(x, x, x, _graph())["kernel"] == "no-dropout"
        assert explain(x, x, x, _graph(), dropout=0.5)["kernel"] != "no-dropout"


def test_paths_register_by_priority_and_can_be_forced():
    x = torch.randn(3, 2, 4)
    marker = torch.full((3, 2, 4), 7.0)
    dispatch.register_path("test-path", lambda call: call.scale == 0.123, lambda call: marker, priority=99)
    try:
        assert ga.graph_attention(x, x, x, _graph(), scale=0.123) is marker
        assert ga.graph_attention(x, x, x, _graph()) is not marker
        with sk.force_path("test-path"):
            assert ga.graph_attention(x, x, x, _graph()) is marker
        with pytest.raises(ValueError, match="no attention path named"):
            with sk.force_path("nope"):
                ga.graph_attention(x, x, x, _graph())
    finally:
        dispatch._PATHS[:] = [p for p in dispatch._PATHS if p.name != "test-path"]


def test_register_kernels_rejects_unknown_ops():
    with pytest.raises(ValueError, match="unknown op"):
        dispatch.register_kernels("bad", "cpu", {"attention": lambda: None})
