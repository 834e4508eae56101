"""sparse_kernels: the graph-attention engine (SDDMM, edge softmax, SpMM, fused attention).

Imports torch (and triton for the GPU backend) only; knows nothing about PyG.
"""
from .csr import CSC, CSR, build_csr, csr_from_sorted_rows, validate_edge_index
from .ops import (attention, attention_with_stats, edge_softmax, register_backend, sddmm, spmm,
                  validate_attention_inputs)
from .reference import NORMALIZERS

__all__ = ["CSR", "CSC", "build_csr", "csr_from_sorted_rows", "validate_edge_index", "attention",
           "attention_with_stats", "sddmm", "edge_softmax", "spmm", "register_backend",
           "validate_attention_inputs", "NORMALIZERS"]
