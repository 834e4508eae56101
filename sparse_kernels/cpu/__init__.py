r"""Fused CPU kernels of the engine: ``attention.c``, compiled on first use and called through ctypes.

The kernels compute the fused attention of ``sparse_kernels.reference`` (the oracle they are
tested against) — scores, normalisation, counter-based dropout and aggregation in one pass per
destination row, with edge-vector terms (``edge_k``, ``edge_v``) and a per-edge bias — and its
backward (a row pass for ``dq`` and the per-edge gradients, a column pass over the cached
transpose for ``dk`` and ``dv``), for float32 and float64, with OpenMP over rows (the thread
count of :func:`torch.get_num_threads`). Nothing of size :math:`E \times H \times D` is formed.

The C source (``attention.c`` with ``attention_impl.h``, included once per scalar type) is plain C99
(no PyTorch headers) and compiles with the system C compiler (``$CC`` or ``cc``; about 20 s of one core
with gcc at ``-O3``) into a cache folder (``$GRAPHATTN_CACHE`` or ``~/.cache/graphattn``), keyed by the
source, the flags, the compiler and the machine. One process builds at a time per cache (a file lock):
processes started side by side on a fresh cache compile once, and the others wait and load that build. A
compile that runs past ``$GRAPHATTN_CC_TIMEOUT`` seconds (default 900, room for a loaded machine) counts as
failed. Where no compiler works, ``available`` is ``False`` and the engine runs the plain-PyTorch
reference, after one ``RuntimeWarning`` that carries the compiler's message.
``GRAPHATTN_CPU_KERNELS=0`` switches these kernels off.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import Optional

import torch
from torch import Tensor

from ..call import SCORES, Grads, KernelCall

__all__ = ["available", "load_error", "attention_fwd", "attention_bwd", "dropout_keep", "dropout_blocks",
           "elementwise_dropout", "kernels", "supports", "KERNEL_DTYPES"]

#: Input dtypes the CPU kernels take.
KERNEL_DTYPES = (torch.float32, torch.float64)
_FOLDER = os.path.dirname(os.path.abspath(__file__))
_SOURCE = os.path.join(_FOLDER, "attention.c")
_SOURCES = (_SOURCE, os.path.join(_FOLDER, "attention_impl.h"))
_FLAGS = ["-O3", "-fno-trapping-math", "-fPIC", "-shared", "-fopenmp", "-std=gnu99"]
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


def _compile_timeout() -> float:
    """Seconds a compile may take: ``$GRAPHATTN_CC_TIMEOUT``, default 900.

    Raises:
        RuntimeError: ``GRAPHATTN_CC_TIMEOUT`` is not a positive number.
    """
    value = os.environ.get("GRAPHATTN_CC_TIMEOUT", "900")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise RuntimeError(f"GRAPHATTN_CC_TIMEOUT must be a positive number of seconds, got {value!r}")
    return seconds


def _compile(compiler: str, flags: list[str], target: str) -> None:
    timeout = _compile_timeout()
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        out = os.path.join(tmp, "lib.so")
        try:
            subprocess.run([compiler, *flags, "-o", out, _SOURCE, "-lm"], check=True, capture_output=True,
                           text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise subprocess.SubprocessError(f"the compile ran past {timeout:g} s (raise GRAPHATTN_CC_TIMEOUT on "
                                             "a loaded machine)") from err
        os.replace(out, target)          # atomic: concurrent builders never see a partial library


def _build_once(compiler: str, flags: list[str], target: str) -> None:
    """Compiles ``target`` unless it exists, holding ``<target>.lock``: of the processes that find no
    library, one compiles and the others wait for it, then find the library and skip the compile."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if not os.path.exists(target):
            _compile(compiler, flags, target)


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
                _build_once(compiler, flags, target)
            return ctypes.CDLL(target)
        except (OSError, subprocess.SubprocessError) as err:
            stderr = getattr(err, "stderr", "") or ""
            errors.append(f"{' '.join(flags)}: {err} {stderr.strip()[:300]}")
    raise RuntimeError("; ".join(errors))


_CTYPES = {"int64_t": ctypes.c_int64, "double": ctypes.c_double}


def _call_struct(lib: ctypes.CDLL) -> type:
    """The ctypes mirror of ``ga_call_t``, built from the library's own field list (``ga_call_fields``) and
    checked field by field against its ``offsetof`` values and ``sizeof``."""
    lib.ga_call_fields.restype = ctypes.c_char_p
    described = [item.split(":") for item in lib.ga_call_fields().decode().split(";") if item]
    fields = [(name, ctypes.c_void_p if "*" in ctype else _CTYPES[ctype]) for name, ctype in described]
    struct = type("GaCall", (ctypes.Structure,), {"_fields_": fields})
    offsets = (ctypes.c_int64 * (len(fields) + 1))()
    lib.ga_call_offsets(offsets)
    mine = [getattr(struct, name).offset for name, _ in fields] + [ctypes.sizeof(struct)]
    if list(offsets) != mine:
        raise RuntimeError(f"the ctypes mirror of ga_call_t does not match the C layout: {mine} != {list(offsets)}")
    return struct


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, dbl = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
    lib.ga_dropout_keep.argtypes = [i64, i64, ptr, i64, i64, ptr]
    lib.ga_dropout_keep.restype = None
    lib.call_struct = _call_struct(lib)
    for suffix in _SUFFIX.values():
        blocks = getattr(lib, f"ga_dropout_blocks_{suffix}")
        blocks.argtypes = [i64, i64, i64, ptr, ptr, i64, i64, dbl, ptr]
        blocks.restype = None
        elementwise = getattr(lib, f"ga_dropout_{suffix}")
        elementwise.argtypes = [i64, ptr, i64, i64, dbl, ptr, i64]
        elementwise.restype = None
        for op in ("fwd", "bwd"):
            kernel = getattr(lib, f"ga_attention_{op}_{suffix}")
            kernel.argtypes = [ctypes.POINTER(lib.call_struct)]
            kernel.restype = None


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
                    warnings.warn(f"sparse_kernels: the compiled CPU kernels are unavailable, so attention on the CPU "
                                  f"runs the plain-PyTorch reference (5-15x slower). {_error}", RuntimeWarning,
                                  stacklevel=3)
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


def _struct(call: KernelCall, **outputs: Optional[Tensor]):
    """The ``ga_call_t`` of ``call`` with the given output / scratch tensors (field name -> tensor)."""
    lib = _library()
    i, g, o = call.inputs, call.graph, call.options
    tensors = dict(rowptr=g.rowptr, col=g.col, eid=g.eid, colptr=g.colptr, row_t=g.row_t, perm_t=g.perm_t,
                   q=i.q, k=i.k, v=i.v, bias=i.bias, edge_k=i.edge_k, edge_v=call.edge_v, att=i.att, **outputs)
    return lib.call_struct(
        n_dst=i.q.size(0), n_src=i.k.size(0), heads=i.q.size(1), dim=i.q.size(2), dim_v=i.v.size(2),
        scale=o.scale, keep_scale=o.keep_scale, negative_slope=o.negative_slope,
        normalizer=_NORM_CODES[o.normalizer], score=SCORES.index(o.score),
        seed=0 if i.seed is None else int(i.seed.reshape(()).item()), threshold=o.p_threshold,
        nthreads=torch.get_num_threads(), **{name: _p(t) for name, t in tensors.items()})


def _run(kernel: str, call: KernelCall, struct) -> None:
    getattr(_library(), f"{kernel}_{_SUFFIX[call.inputs.q.dtype]}")(ctypes.byref(struct))
    if struct.error:
        raise MemoryError(f"{kernel}: a buffer of the CPU kernels could not be allocated")


def attention_fwd(call: KernelCall) -> tuple[Tensor, Tensor]:
    """Fused forward (see ``attention.c``) of a :class:`~sparse_kernels.call.KernelCall` whose tensors are
    contiguous, on the CPU, of one float dtype (index tensors int64). Returns ``out`` ``[N_dst, H, Dv]`` and
    ``stat`` ``[N_dst, H]`` in the input dtype."""
    q, v = call.inputs.q, call.inputs.v
    out = q.new_empty(q.size(0), q.size(1), v.size(2))
    stat = q.new_empty(q.size(0), q.size(1))
    _run("ga_attention_fwd", call, _struct(call, res_out=out, res_stat=stat))
    return out, stat


def attention_bwd(call: KernelCall, out: Tensor, stat: Tensor, grad_out: Tensor) -> Grads:
    """Fused backward of ``call`` (``None`` for absent inputs; with ``shared_edge`` ``dedge_k`` is the
    gradient of both uses of ``edge_k``)."""
    i = call.inputs
    dq, dk, dv = torch.empty_like(i.q), torch.empty_like(i.k), torch.empty_like(i.v)
    dbias = None if i.bias is None else torch.empty_like(i.bias)
    dek = None if i.edge_k is None else torch.empty_like(i.edge_k)
    dev = dek if call.options.shared_edge else (None if i.edge_v is None else torch.empty_like(i.edge_v))
    datt = None if i.att is None else torch.empty_like(i.att)
    scratch = i.q.new_empty(2, call.graph.col.numel(), i.q.size(1))
    datt_rows = None if datt is None else torch.empty_like(i.q)
    _run("ga_attention_bwd", call, _struct(call, grad_out=grad_out, out=out, stat=stat, dq=dq, dk=dk, dv=dv,
                                           dbias=dbias, dedge_k=dek, dedge_v=dev, datt=datt, ds_buf=scratch[0],
                                           w_buf=scratch[1], datt_rows=datt_rows))
    return Grads(dq, dk, dv, dbias, dek, None if call.options.shared_edge else dev, datt)


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


def elementwise_dropout(x: Tensor, seed: Tensor, p_threshold: int, keep_scale: float) -> Tensor:
    """``x * keep * keep_scale`` with the keep mask of the element counters (``ga_dropout``; the oracle is
    :func:`sparse_kernels.dropout.elementwise_dropout`), a new contiguous tensor of ``x``'s shape."""
    x = x.contiguous()
    out = torch.empty_like(x)
    getattr(_library(), f"ga_dropout_{_SUFFIX[x.dtype]}")(x.numel(), _p(x), int(seed.reshape(()).item()), p_threshold,
                                                         float(keep_scale), _p(out), torch.get_num_threads())
    return out


# --------------------------------------------------------------------------- as the engine's "cpu" kernels
_OPS = ("attention_fwd", "attention_bwd", "elementwise_dropout")


def kernels() -> dict:
    """The ``attention_fwd`` / ``attention_bwd`` / ``elementwise_dropout`` op implementations."""
    return {"attention_fwd": attention_fwd, "attention_bwd": attention_bwd, "elementwise_dropout": elementwise_dropout}


def supports(op: str, features) -> bool:
    """float32/float64 attention and dropout when the library builds (the other ops stay on the reference)."""
    return op in _OPS and features.dtype in KERNEL_DTYPES and available()
