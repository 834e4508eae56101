r"""Triton kernels of the engine, registered as the CUDA implementation of the ``sparse_kernels`` ops.

=====================  ==========================================================
module                 kernels
=====================  ==========================================================
``attention_fwd``      fused online-softmax forward on the CSR (split-K for long rows)
``attention_bwd``      row pass (``dq``, ``dbias``) + column pass (``dk``, ``dv``), no atomics
``sddmm``              edge-parallel per-edge dot products
``spmm``               row-parallel weighted neighbour sums
``edge_softmax``       per-row statistics + edge-parallel normalisation, and its gradient
``schedule``           degree-adaptive work plans (cached per graph) and launch configurations
=====================  ==========================================================

Importing :mod:`sparse_kernels` registers these kernels for ``"cuda"`` when Triton is
installed (:func:`register`). Float64 inputs fall back to the reference. On the CPU, the
same kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` set before this module is
imported) through the same op dispatch inside :func:`interpreter_backend`; that is how the
tests check them without a GPU.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import torch

from ..ops import REFERENCE_KERNELS, backend_override, register_backend
from . import attention_bwd, attention_fwd, edge_softmax, schedule, sddmm, spmm
from ._common import KERNEL_DTYPES, interpreting
from .schedule import chunk_override, plan_for

__all__ = ["kernels", "register", "interpreter_backend", "chunk_override", "plan_for", "attention_fwd",
           "attention_bwd", "sddmm", "spmm", "edge_softmax", "schedule"]

_KERNELS: dict[str, Callable] = {
    "attention_fwd": attention_fwd.attention_fwd, "attention_bwd": attention_bwd.attention_bwd,
    "sddmm": sddmm.sddmm, "spmm": spmm.spmm, "edge_softmax": edge_softmax.edge_softmax,
    "edge_softmax_bwd": edge_softmax.edge_softmax_bwd}


def _with_fallback(name: str, kernel: Callable) -> Callable:
    """``kernel`` for fp32/fp16/bf16 features (on their device), the reference for anything else (float64)."""
    reference = REFERENCE_KERNELS[name]

    @functools.wraps(kernel)
    def run(*args, **kwargs):
        features = args[0] if name != "attention_bwd" else args[1]
        if features.dtype not in KERNEL_DTYPES:
            return reference(*args, **kwargs)
        if features.device.type == "cuda":  # launch on the tensors' GPU, not the current one
            with torch.cuda.device(features.device):
                return kernel(*args, **kwargs)
        return kernel(*args, **kwargs)

    return run


def kernels() -> dict[str, Callable]:
    """The op implementations (op name -> function with the op's signature)."""
    return {name: _with_fallback(name, fn) for name, fn in _KERNELS.items()}


def register(device_type: str = "cuda") -> None:
    """Registers the Triton kernels as the ``device_type`` implementation of every ``sparse_kernels`` op."""
    register_backend(device_type, **kernels())


@contextlib.contextmanager
def interpreter_backend() -> Iterator[None]:
    """Runs the ops on CPU tensors through the Triton kernels (in the interpreter) inside the block.

    Raises:
        RuntimeError: Triton's interpreter is off (set ``TRITON_INTERPRET=1`` before importing).
    """
    if not interpreting():
        raise RuntimeError("interpreter_backend() needs TRITON_INTERPRET=1 set before sparse_kernels is imported")
    with backend_override("cpu", **kernels()):
        yield
