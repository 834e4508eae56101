r"""Triton kernels of the engine, registered as the CUDA implementation of the ``sparse_kernels`` ops.

=======================  ==========================================================
module                   kernels
=======================  ==========================================================
``attention_fwd``        fused online-softmax forward on the CSR (split-K for long rows), with the
                         dot, gat and gatv2 scores, a bias, edge vectors and counter-based dropout
``attention_bwd``        row pass (``dq``, per-edge gradients, ``ds`` and ``w`` per edge) + column
                         pass (``dk``, ``dv``), no atomics
``sddmm``                edge-parallel per-edge dot products
``spmm``                 row-parallel weighted neighbour sums
``edge_softmax``         per-row statistics + edge-parallel normalisation, and its gradient
``elementwise_dropout``  counter-based dropout of a dense tensor (its own gradient)
``schedule``             degree-adaptive work plans (cached per graph) and launch configurations
=======================  ==========================================================

Importing :mod:`sparse_kernels` registers these kernels for ``"cuda"`` when Triton is
installed (``register``). Float64 inputs fall back to the reference. On the CPU, the
same kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` set before this module is
imported) through the same op dispatch inside ``interpreter_backend``; that is how the
tests check them without a GPU.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import torch

from .. import dispatch
from ..call import KernelCall
from ..dispatch import Features
from ..bsr import select_bsr
from . import attention_bwd, attention_fwd, edge_softmax, elementwise_dropout, schedule, sddmm, spmm
from ._common import KERNEL_DTYPES, interpreting
from .schedule import chunk_override, plan_for

__all__ = ["kernels", "supports", "prepare", "register", "interpreter_backend", "chunk_override", "plan_for",
           "attention_fwd", "attention_bwd", "sddmm", "spmm", "edge_softmax", "schedule"]


_KERNELS: dict[str, Callable] = {
    "attention_fwd": attention_fwd.attention_fwd, "attention_bwd": attention_bwd.attention_bwd,
    "sddmm": sddmm.sddmm, "spmm": spmm.spmm, "edge_softmax": edge_softmax.edge_softmax,
    "edge_softmax_bwd": edge_softmax.edge_softmax_bwd, "elementwise_dropout": elementwise_dropout.elementwise_dropout}


def _device_of(args: tuple) -> torch.device:
    """The device of an op's inputs (the first float tensor, or a fused call's ``q``)."""
    for a in args:
        if isinstance(a, KernelCall):
            return a.inputs.q.device
        if isinstance(a, torch.Tensor) and a.dtype.is_floating_point:
            return a.device
    raise ValueError("no floating-point input to place the kernel on")


def _on_device(kernel: Callable) -> Callable:
    """Launches on the inputs' GPU, not the current one."""

    @functools.wraps(kernel)
    def run(*args):
        device = _device_of(args)
        if device.type == "cuda":
            with torch.cuda.device(device):
                return kernel(*args)
        return kernel(*args)

    return run


def kernels() -> dict[str, Callable]:
    """The op implementations (op name -> function with the op's signature)."""
    return {name: _on_device(fn) for name, fn in _KERNELS.items()}


def supports(op: str, features: Features) -> bool:
    """fp32/fp16/bf16 inputs, every op and feature (bias, edge vectors, dropout, each normaliser, each
    score function of the fused attention)."""
    return features.dtype in KERNEL_DTYPES


def _bsr_applies(call: dispatch.AttentionCall) -> bool:
    """CUDA fp16/bf16 softmax attention without per-edge inputs or dropout on a graph whose tiles are
    well filled (:func:`~sparse_kernels.bsr.select_bsr`, cached per graph); never while tracing."""
    return (call.device_type == "cuda" and call.q.dtype in (torch.float16, torch.bfloat16)
            and call.k.dtype == call.v.dtype == call.q.dtype and call.score == "dot" and call.normalizer == "softmax"
            and call.bias is None and call.edge_k is None and call.edge_v is None and call.dropout == 0.0
            and not torch.compiler.is_compiling() and select_bsr(call.csr) is not None)


def _bsr_run(call: dispatch.AttentionCall) -> torch.Tensor:
    from .bsr import bsr_attention

    return bsr_attention(call.q, call.k, call.v, select_bsr(call.csr), call.scale)


def prepare(csr) -> None:
    """Builds the schedules of both passes and the block-sparse selection of a graph (each cached on it)."""
    plan_for(csr.rowptr)
    plan_for(csr.transpose().colptr)
    select_bsr(csr)


def register(device_type: str = "cuda") -> None:
    """Registers the Triton kernels as the ``device_type`` kernels of the ``sparse_kernels`` ops, the
    block-sparse path and the preparer of their per-graph structures."""
    dispatch.register_kernels("triton", device_type, kernels(), supports, priority=20)
    dispatch.register_path("bsr", _bsr_applies, _bsr_run, priority=20)
    dispatch.register_preparer(device_type, prepare)


@contextlib.contextmanager
def interpreter_backend() -> Iterator[None]:
    """Runs the ops on CPU tensors through the Triton kernels (in the interpreter) inside the block.

    Raises:
        RuntimeError: Triton's interpreter is off (set ``TRITON_INTERPRET=1`` before importing).
    """
    if not interpreting():
        raise RuntimeError("interpreter_backend() needs TRITON_INTERPRET=1 set before sparse_kernels is imported")
    with dispatch.kernel_override("triton", "cpu", kernels(), supports):
        yield
