r"""The engine's dispatcher: which implementation runs a call, decided in one place.

Two registries, both ordered by priority (highest first; among equals, the latest registration):

* **Paths** (:func:`register_path`) run a whole attention call with its autograd: the CSR path
  (the fused custom ops of :mod:`sparse_kernels.ops`), the block-sparse Triton kernel for graphs
  with dense tiles, dense blocks through batched GEMMs / SDPA for block-diagonal full graphs.
  Each path says from the call (device, dtype, sizes, the graph's structure, which per-edge
  inputs and options are present) whether it applies.
* **Kernels** (:func:`register_kernels`) implement the custom ops (``attention_fwd``,
  ``attention_bwd``, ``sddmm``, ``spmm``, ``edge_softmax``, ``edge_softmax_bwd``,
  ``elementwise_dropout``) on one device
  type: the plain-PyTorch reference (any device, every feature; the test oracle), the compiled
  CPU kernels (:mod:`sparse_kernels.cpu`) and the Triton kernels (CUDA). Each says which ops and
  features (:class:`Features`) it supports.

Adding a kernel or a path is a registration; callers never choose. Structures that a path or a
kernel derives from a graph (schedules, tile layouts, bucket plans) are built by *preparers*
(:func:`register_preparer`), which :func:`prepare` runs once per graph, so that no call on a prepared
graph reads anything back from the device. :func:`explain` tells which
path and kernel a call takes (benchmarks record it), :func:`force_path` pins a path and
:func:`kernel_override` a kernel set inside a ``with`` block (tests run the Triton kernels on
CPU tensors in Triton's interpreter this way).
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor

from . import dropout as drop
from .call import Features, GraphIndex, Inputs, KernelCall, Options

__all__ = ["Features", "AttentionCall", "Path", "KernelSet", "register_path", "register_kernels", "register_preparer",
           "prepare", "select_path", "select_kernels", "kernel", "explain", "force_path", "kernel_override", "OPS"]

#: The custom ops a kernel set may implement.
OPS = ("attention_fwd", "attention_bwd", "sddmm", "spmm", "edge_softmax", "edge_softmax_bwd", "elementwise_dropout")


@dataclass
class AttentionCall:
    """One attention call as the paths see it (inputs validated; per-edge tensors in the user's order)."""

    q: Tensor
    k: Tensor
    v: Tensor
    csr: "object"                   # sparse_kernels.csr.CSR (typed loosely: no import cycle)
    bias: Optional[Tensor]
    edge_k: Optional[Tensor]
    edge_v: Optional[Tensor]
    scale: float
    normalizer: str
    dropout: float
    seed: Optional[Tensor]
    score: str = "dot"
    negative_slope: float = 0.2
    att: Optional[Tensor] = None

    @property
    def device_type(self) -> str:
        return self.q.device.type

    @property
    def features(self) -> Features:
        return Features(self.q.dtype, self.normalizer, self.edge_k is not None or self.edge_v is not None,
                        self.dropout > 0.0, self.bias is not None, self.score)

    @property
    def needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in
                                               (self.q, self.k, self.v, self.bias, self.edge_k, self.edge_v, self.att))

    def kernel_call(self) -> KernelCall:
        """The call as the fused CSR kernels take it (contiguous tensors; one tensor given as both
        ``edge_k`` and ``edge_v`` passed once, as ``edge_k`` with ``shared_edge``)."""
        p_threshold = drop.threshold(self.dropout) if self.seed is not None else 0
        shared_edge = self.edge_k is not None and self.edge_k is self.edge_v
        inputs = Inputs(*(None if x is None else x.contiguous() for x in (
            self.q, self.k, self.v, self.bias, self.edge_k, None if shared_edge else self.edge_v, self.att)),
            seed=self.seed if p_threshold else None)
        options = Options(self.scale, self.normalizer, self.score, self.negative_slope, p_threshold,
                          drop.keep_scale(self.dropout), shared_edge)
        return KernelCall(inputs, GraphIndex.of(self.csr), options)


@dataclass
class Path:
    """A way to run a whole attention call: ``applies(call) -> bool``, ``run(call) -> out``."""

    name: str
    applies: Callable[[AttentionCall], bool]
    run: Callable[[AttentionCall], Tensor]
    priority: int = 0
    order: int = field(default_factory=itertools.count().__next__)


@dataclass
class KernelSet:
    """Implementations of custom ops on one device type (``None``: any device).

    ``supports(op, features)`` says whether this set handles a call; ``kernels`` maps op names to
    functions with the op's signature (see :mod:`sparse_kernels.ops`)."""

    name: str
    device_type: Optional[str]
    kernels: dict[str, Callable]
    supports: Callable[[str, Features], bool] = lambda op, features: True
    priority: int = 0
    order: int = field(default_factory=itertools.count().__next__)


_PATHS: list[Path] = []
_KERNEL_SETS: list[KernelSet] = []
_forced_path: Optional[str] = None
#: (op, device type, features) -> kernel set; cleared whenever the registry changes
_KERNEL_CACHE: dict[tuple, KernelSet] = {}
#: (device type or None for any, preparer)
_PREPARERS: list[tuple[Optional[str], Callable]] = []


def _ranked(items: list) -> list:
    return sorted(items, key=lambda x: (-x.priority, -x.order))


def register_path(name: str, applies: Callable[[AttentionCall], bool], run: Callable[[AttentionCall], Tensor],
                  priority: int = 0) -> None:
    """Registers (or replaces, by name) an attention path."""
    _PATHS[:] = [p for p in _PATHS if p.name != name] + [Path(name, applies, run, priority)]


def register_kernels(name: str, device_type: Optional[str], kernels: dict[str, Callable],
                     supports: Callable[[str, Features], bool] = lambda op, features: True,
                     priority: int = 0) -> None:
    """Registers (or replaces, by name and device type) a kernel set."""
    unknown = set(kernels) - set(OPS)
    if unknown:
        raise ValueError(f"unknown op(s) {sorted(unknown)}; known: {list(OPS)}")
    _KERNEL_SETS[:] = [s for s in _KERNEL_SETS if (s.name, s.device_type) != (name, device_type)]
    _KERNEL_SETS.append(KernelSet(name, device_type, dict(kernels), supports, priority))
    _KERNEL_CACHE.clear()


def register_preparer(device_type: Optional[str], preparer: Callable) -> None:
    """Registers ``preparer(csr)``, run by :func:`prepare` on graphs of ``device_type`` (``None``: any)."""
    _PREPARERS.append((device_type, preparer))


def prepare(csr):
    """Builds, once, everything the paths and kernels derive from the graph ``csr`` on its device (the
    transpose, kernel schedules, tile layouts, dense-block plans; each cached on the graph), so that
    later calls never synchronise with the device. Returns ``csr``."""
    if not torch.compiler.is_compiling():
        for device_type, preparer in _PREPARERS:
            if device_type in (None, csr.device.type):
                preparer(csr)
    return csr


def select_path(call: AttentionCall) -> Path:
    """The path that runs ``call``: the forced one (:func:`force_path`) or the first that applies."""
    if _forced_path is not None:
        for path in _PATHS:
            if path.name == _forced_path:
                return path
        raise ValueError(f"no attention path named {_forced_path!r}; known: {[p.name for p in _PATHS]}")
    for path in _ranked(_PATHS):
        if path.applies(call):
            return path
    raise RuntimeError("no attention path applies (the CSR path should always apply)")


def select_kernels(op: str, device_type: str, features: Features) -> KernelSet:
    """The kernel set that implements ``op`` for these features on ``device_type`` (cached)."""
    key = (op, device_type, features)
    cached = _KERNEL_CACHE.get(key)
    if cached is not None:
        return cached
    for kernel_set in _ranked(_KERNEL_SETS):
        if (kernel_set.device_type in (None, device_type) and op in kernel_set.kernels
                and kernel_set.supports(op, features)):
            _KERNEL_CACHE[key] = kernel_set
            return kernel_set
    raise RuntimeError(f"no kernel implements {op} on {device_type} for {features}")


def kernel(op: str, device_type: str, features: Features) -> Callable:
    """The implementation of ``op`` for these features on ``device_type``."""
    return select_kernels(op, device_type, features).kernels[op]


def explain(call: AttentionCall) -> dict[str, str]:
    """``{"path": ..., "kernel": ...}``: what would run ``call`` (the kernel only for the CSR path)."""
    path = select_path(call)
    out = {"path": path.name}
    if path.name == "csr":
        out["kernel"] = select_kernels("attention_fwd", call.device_type, call.features).name
    return out


@contextlib.contextmanager
def force_path(name: str) -> Iterator[None]:
    """Runs every attention call inside the block on the path ``name`` (tests, benchmarks)."""
    global _forced_path
    previous, _forced_path = _forced_path, name
    try:
        yield
    finally:
        _forced_path = previous


@contextlib.contextmanager
def kernel_override(name: str, device_type: str, kernels: dict[str, Callable],
                    supports: Callable[[str, Features], bool] = lambda op, features: True) -> Iterator[None]:
    """Puts ``kernels`` first for ``device_type`` inside the block, then restores the registry."""
    saved = list(_KERNEL_SETS)
    register_kernels(name, device_type, kernels, supports, priority=1 << 30)
    try:
        yield
    finally:
        _KERNEL_SETS[:] = saved
        _KERNEL_CACHE.clear()
