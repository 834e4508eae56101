"""sparse_kernels: the graph-attention engine (SDDMM, edge softmax, SpMM, fused attention, counter-based dropout).

Imports torch (and triton for the GPU backend) only; knows nothing about PyG. Which
implementation runs a call is decided by :mod:`sparse_kernels.dispatch` from the device, dtype,
sizes, features and the graph's structure: the plain-PyTorch reference (any device; the oracle),
the compiled CPU kernels (:mod:`sparse_kernels.cpu`), the Triton kernels of
:mod:`sparse_kernels.triton` on CUDA (registered here when Triton is installed), the block-sparse
Triton kernel and dense blocks.
"""
import importlib.util

from . import cpu, dense_blocks, dispatch, dropout, flops
from .csr import CSC, CSR, build_csr, csr_from_sorted_rows, validate_edge_index
from .call import SCORES
from .dispatch import force_path, prepare
from .ops import (attention, attention_with_stats, edge_softmax, elementwise_dropout, explain, sddmm, spmm,
                  validate_attention_inputs)
from .reference import NORMALIZERS

dispatch.register_kernels("cpu", "cpu", cpu.kernels(), cpu.supports, priority=10)

if importlib.util.find_spec("triton") is not None:
    from . import triton as _triton_backend

    _triton_backend.register("cuda")

__all__ = ["CSR", "CSC", "build_csr", "csr_from_sorted_rows", "validate_edge_index", "attention",
           "attention_with_stats", "sddmm", "edge_softmax", "spmm", "elementwise_dropout", "validate_attention_inputs",
           "NORMALIZERS", "SCORES", "dispatch", "dropout", "dense_blocks", "flops", "explain", "force_path", "prepare"]
