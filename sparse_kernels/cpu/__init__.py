r"""Fused CPU kernels of the engine: ``attention.c``, compiled on first use and called through ctypes.

The kernels compute the fused attention of :mod:`sparse_kernels.reference` (the oracle they are
tested against) — scores, normalisation, counter-based dropout and aggregation in one pass per
destination row, with edge-vector terms (``edge_k``, ``edge_v``) and a per-edge bias — and its
backward (a row pass for ``dq`` and the per-edge gradients, a column pass over the cached
transpose for ``dk`` and ``dv``), for float32 and float64, with OpenMP over rows (the thread
count of :func:`torch.get_num_threads`). Nothing of size :math:`E \times H \times D` is formed.

The C source (``attention.c`` with ``attention_impl.h``, included once per scalar type) is plain C99
(no PyTorch headers) and compiles in about a second with the system
C compiler (``$CC`` or ``cc``) into a cache folder (``$GRAPHATTN_CACHE`` or
``~/.cache/graphattn``), keyed by the source, the flags, the compiler and the machine. Where no
compiler works, :func:`available` is ``False`` and the engine runs the plain-PyTorch reference.
``GRAPHATTN_CPU_KERNELS=0`` switches these kernels off.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Optional

import torch
from torch import Tensor

__all__ = ["available", "load_error", "attention_fwd", "attention_bwd", "dropout_keep", "dropout_blocks", "kernels",
           "supports", "KERNEL_DTYPES"]

#: Input dtypes the CPU kernels take.
KERNEL_DTYPES = (torch.float32, torch.float64)
_FOLDER = os.path.dirname(os.path.abspath(__file__))
_SOURCE = os.path.join(_FOLDER, "attention.c")
_SOURCES = (_SOURCE, os.path.join(_FOLDER, "attention_impl.h"))
_FLAGS = ["-O3", "-fPIC", "-shared", "-fopenmp", "-std=gnu99"]
_NATIVE = ["-march=native"]
_NORM_CODES = {"softmax": 0, "sigmoid": 1, "softplus": 2}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_error: Optional[str] = None
_tried = False


def _cache_dir() -> str:
    return os.environ.get("GRAPHATTN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "graphattn"))


def _machine_key() -> str:
    """What a ``-march=native`` build depends on: the CPU model and its flags."""
    info = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        info += "".join(sorted(set(lines)))
    except OSError:
        info += platform.processor()
    return info


def _compile(compiler: str, flags: list[str], target: str) -> None:
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        out = os.path.join(tmp, "lib.so")
        subprocess.run([compiler, *flags, "-o", out, _SOURCE, "-lm"], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(out, target)          # atomic: concurrent builders never see a partial library


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC)")
    source = b"".join(open(path, "rb").read() for path in _SOURCES)
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    errors = []
    for flags in (_FLAGS + _NATIVE, _FLAGS):
        key = hashlib.sha256(source + repr((flags, version, _machine_key(), sys.platform)).encode()).hexdigest()[:16]
        target = os.path.join(_cache_dir(), f"attention-{key}.so")
        try:
            if not os.path.exists(target):
                os.makedirs(_cache_dir(), exist_ok=True)
                _compile(compiler, flags, target)
            return ctypes.CDLL(target)
        except (OSError, subprocess.SubprocessError) as err:
            stderr = getattr(err, "stderr", "") or ""
            errors.append(f"{' '.join(flags)}: {err} {stderr.strip()[:300]}")
    raise RuntimeError("; ".join(errors))


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, dbl = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
    lib.ga_dropout_keep.argtypes = [i64, i64, ptr, i64, i64, ptr]
    lib.ga_dropout_keep.restype = None
    for suffix in _SUFFIX.values():
        blocks = getattr(lib, f"ga_dropout_blocks_{suffix}")
        blocks.argtypes = [i64, i64, i64, ptr, ptr, i64, i64, dbl, ptr]
        blocks.restype = None
    for suffix in _SUFFIX.values():
        fwd = getattr(lib, f"ga_attention_fwd_{suffix}")
        fwd.argtypes = [i64, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, dbl, i64, i64, i64, dbl,
                        ptr, ptr, i64]
        fwd.restype = None
        bwd = getattr(lib, f"ga_attention_bwd_{suffix}")
        bwd.argtypes = [i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr,
                        ptr, ptr, dbl, i64, i64, i64, dbl, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64]
        bwd.restype = None


def _library() -> Optional[ctypes.CDLL]:
    global _lib, _error, _tried
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("GRAPHATTN_CPU_KERNELS", "1") == "0":
                _error = "switched off by GRAPHATTN_CPU_KERNELS=0"
            else:
                try:
                    lib = _build()
                    _declare(lib)
                    _lib = lib
                except Exception as err:  # no compiler, a failed build: the reference serves
                    _error = f"{type(err).__name__}: {err}"
            _tried = True
    return _lib


def available() -> bool:
    """Whether the compiled CPU kernels can run (builds them on the first call)."""
    return _library() is not None


def load_error() -> Optional[str]:
    """Why the kernels are unavailable (``None`` when they load)."""
    _library()
    return _error


def _p(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def attention_fwd(q: Tensor, k: Tensor, v: Tensor, rowptr: Tensor, col: Tensor, eid: Optional[Tensor],
                  bias: Optional[Tensor], edge_k: Optional[Tensor], edge_v: Optional[Tensor], scale: float,
                  normalizer: str, seed: int, threshold: int, keep_scale: float) -> tuple[Tensor, Tensor]:
    """Fused forward (see ``attention.c``). All tensors contiguous, on the CPU, one float dtype;
    index tensors int64; ``eid`` ``None`` when the CSR order is the user's edge order.

    Returns ``out`` ``[N_dst, H, Dv]`` and ``stat`` ``[N_dst, H]`` in the input dtype."""
    lib = _library()
    n_dst, heads, dim = q.shape
    dim_v = v.size(2)
    out = q.new_empty(n_dst, heads, dim_v)
    stat = q.new_empty(n_dst, heads)
    getattr(lib, f"ga_attention_fwd_{_SUFFIX[q.dtype]}")(
        n_dst, heads, dim, dim_v, _p(rowptr), _p(col), _p(eid), _p(q), _p(k), _p(v), _p(bias), _p(edge_k),
        _p(edge_v), float(scale), _NORM_CODES[normalizer], seed, threshold, float(keep_scale), _p(out), _p(stat),
        torch.get_num_threads())
    return out, stat


def attention_bwd(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, stat: Tensor, rowptr: Tensor,
                  col: Tensor, eid: Optional[Tensor], colptr: Tensor, row_t: Tensor, perm_t: Tensor,
                  bias: Optional[Tensor], edge_k: Optional[Tensor], edge_v: Optional[Tensor], scale: float,
                  normalizer: str, seed: int, threshold: int, keep_scale: float, fold_edge_grads: bool = False
                  ) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Fused backward: ``(dq, dk, dv, dbias, dedge_k, dedge_v)`` (``None`` for absent inputs). With
    ``fold_edge_grads`` (``edge_v`` is ``edge_k``) ``dedge_k`` is the gradient of both uses and
    ``dedge_v`` is ``None``."""
    lib = _library()
    n_dst, heads, dim = q.shape
    n_src, dim_v, num_edges = k.size(0), v.size(2), col.numel()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias = None if bias is None else torch.empty_like(bias)
    dek = None if edge_k is None else torch.empty_like(edge_k)
    dev = dek if fold_edge_grads else (None if edge_v is None else torch.empty_like(edge_v))
    scratch = q.new_empty(2, num_edges, heads)
    getattr(lib, f"ga_attention_bwd_{_SUFFIX[q.dtype]}")(
        n_dst, n_src, heads, dim, dim_v, _p(rowptr), _p(col), _p(eid), _p(colptr), _p(row_t), _p(perm_t), _p(q),
        _p(k), _p(v), _p(bias), _p(edge_k), _p(edge_v), _p(grad_out), _p(out), _p(stat), float(scale),
        _NORM_CODES[normalizer], seed, threshold, float(keep_scale), _p(dq), _p(dk), _p(dv), _p(dbias), _p(dek),
        _p(dev), _p(scratch[0]), _p(scratch[1]), torch.get_num_threads())
    return dq, dk, dv, dbias, dek, None if fold_edge_grads else dev


def dropout_blocks(row_edge: Tensor, sizes: Tensor, heads: int, seed: int, threshold: int, keep_scale: float,
                   dtype: torch.dtype) -> Tensor:
    """Dropout factors ``[G, H, n, n]`` of dense blocks: ``keep_scale`` where the edge
    ``row_edge[g, r] + c`` is kept for head ``h``, 0 where dropped or padding (``r``/``c`` >= ``sizes[g]``).

    Args:
        row_edge: ``[G, n]`` int64 user edge id of each block row's first edge; sizes: ``[G]`` int64.
    """
    lib = _library()
    num_blocks, n = row_edge.shape
    out = torch.empty(num_blocks, heads, n, n, dtype=dtype)
    getattr(lib, f"ga_dropout_blocks_{_SUFFIX[dtype]}")(num_blocks, n, heads, _p(row_edge.contiguous()),
                                                        _p(sizes.contiguous()), seed, threshold, float(keep_scale),
                                                        _p(out))
    return out


def dropout_keep(edge: Tensor, heads: int, seed: int, threshold: int) -> Tensor:
    """``[len(edge), heads]`` bool keep mask of the counters ``edge * heads + h`` (``edge < 0``: False)."""
    lib = _library()
    edge = edge.contiguous()
    keep = torch.empty(edge.numel(), heads, dtype=torch.uint8)
    lib.ga_dropout_keep(keep.numel(), heads, _p(edge), seed, threshold, _p(keep))
    return keep.view(torch.bool).view(*edge.shape, heads)


# --------------------------------------------------------------------------- as the engine's "cpu" kernels
def _seed_int(seed: Optional[Tensor]) -> int:
    return 0 if seed is None else int(seed.reshape(()).item())


def _attention_fwd_op(q, k, v, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k, edge_v, seed, scale,
                      normalizer, p_threshold, keep_scale):
    return attention_fwd(q, k, v, rowptr, col, eid, bias, edge_k, edge_v, scale, normalizer, _seed_int(seed),
                         p_threshold, keep_scale)


def _attention_bwd_op(grad_out, q, k, v, out, stat, rowptr, col, row, eid, colptr, row_t, perm_t, bias, edge_k,
                      edge_v, seed, scale, normalizer, p_threshold, keep_scale, fold_edge_grads):
    grads = attention_bwd(grad_out, q, k, v, out, stat, rowptr, col, eid, colptr, row_t, perm_t, bias, edge_k,
                          edge_v, scale, normalizer, _seed_int(seed), p_threshold, keep_scale, fold_edge_grads)
    return tuple(q.new_empty(0) if g is None else g for g in grads)


def kernels() -> dict:
    """The ``attention_fwd`` / ``attention_bwd`` op implementations (the ops' signatures)."""
    return {"attention_fwd": _attention_fwd_op, "attention_bwd": _attention_bwd_op}


def supports(op: str, features) -> bool:
    """float32/float64 attention when the library builds (the other ops stay on the reference)."""
    return op in ("attention_fwd", "attention_bwd") and features.dtype in KERNEL_DTYPES and available()
