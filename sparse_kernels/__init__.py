"""sparse_kernels: the graph-attention engine (SDDMM, edge softmax, SpMM, fused attention).

Imports torch (and triton for the GPU backend) only; knows nothing about PyG. CPU tensors run
the plain-PyTorch reference; CUDA tensors run the Triton kernels of :mod:`sparse_kernels.triton`
(registered here when Triton is installed).
"""
import importlib.util

from .csr import CSC, CSR, build_csr, csr_from_sorted_rows, validate_edge_index
from .ops import (attention, attention_with_stats, backend_override, edge_softmax, register_backend, sddmm, spmm,
                  validate_attention_inputs)
from .reference import NORMALIZERS

if importlib.util.find_spec("triton") is not None:
    from . import triton as _triton_backend

    _triton_backend.register("cuda")

__all__ = ["CSR", "CSC", "build_csr", "csr_from_sorted_rows", "validate_edge_index", "attention",
           "attention_with_stats", "sddmm", "edge_softmax", "spmm", "register_backend", "backend_override",
           "validate_attention_inputs", "NORMALIZERS"]
