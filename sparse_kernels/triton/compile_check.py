r"""Ahead-of-time compilation of every kernel for a GPU target, without a GPU.

The interpreter accepts code that the compiler rejects (for instance a global read that is not a
``constexpr``), so a CPU-only CI also compiles each kernel to a cubin for ``sm_90`` with the
launch configurations the table picks, and can report registers and spills (``ptxas -v``)::

    TRITON_INTERPRET=0 python -m sparse_kernels.triton.compile_check --ptxas-info

Each kernel's Triton IR is also checked for **32-bit index arithmetic** (:func:`narrow_index_ops`): an
index that runs over rows, edges or tiles (a program id along the grid's first axis, a value loaded
from an index tensor, a loop over such values) must be widened to int64 before it is multiplied by or
added to a run-time value (a size such as ``H``, another index), since products such as
``row * H * D`` pass :math:`2^{31}` long before the tensors fill the GPU's memory (512k rows x 32 heads
x 128 channels). An explicit narrowing (``.to(tl.uint32)``, as in the dropout hash) ends the index.
A kernel with such arithmetic is reported instead of ``ok``.

Must run with ``TRITON_INTERPRET`` unset or ``0`` (the kernels must be ``JITFunction``\ s).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from typing import Iterator

import triton

from . import _common, attention_bwd, attention_fwd, bsr, edge_softmax, elementwise_dropout, sddmm, spmm

__all__ = ["kernel_cases", "compile_kernel", "narrow_index_ops", "main"]

_INDEX = {"items_ptr": "i32", "splits_ptr": "i32", "col_ptr": "i64", "row_t_ptr": "i64", "perm_t_ptr": "i64",
          "segment_ptr": "i64", "gather_ptr": "i64", "eid_ptr": "i64", "seed_ptr": "i64",
          "ROWPTR": "i64", "SPLIT": "i64", "BCOL": "i64", "COLPTR": "i64", "SPLIT_T": "i64", "TROW": "i64",
          "MIDX": "i32", "MIDX_T": "i32", "MASKS": "u8"}
_FP32 = {"stat_ptr", "delta_ptr", "pm_ptr", "pl_ptr", "pacc_ptr", "pdq_ptr", "pdk_ptr", "pdv_ptr", "pout_ptr",
         "ds_ptr", "w_ptr", "datt_ptr", "LSE", "DELTA"}
_FP32_SCALARS = {"scale", "keep_scale", "slope", "qk_scale"}
#: Pointer arguments of the BSR kernels (named in capitals there, as in FlashAttention's kernels).
_TILE_POINTERS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV_", "LSE", "DELTA", "ROWPTR", "SPLIT", "BCOL", "MIDX",
                  "MASKS", "COLPTR", "SPLIT_T", "TROW", "MIDX_T"}


def _signature(kernel, dtype: str, constexprs: dict) -> tuple[dict, dict]:
    """Argument types by naming convention: index pointers, fp32 scratch, features in ``dtype``;
    ``scale``, ``slope`` and ``keep_scale`` fp32, other scalars i32 (widths hinted divisible by 16, as at
    run time for D = 16k; a width of 1, the gat score's ``D``, is a ``constexpr`` as Triton specialises it)."""
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr") or name in _TILE_POINTERS:
            signature[name] = "*" + _INDEX.get(name, "fp32" if name in _FP32 else dtype)
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "fp32" if name in _FP32_SCALARS else "i32"
            if name in ("D", "DV", "F"):
                attrs[(i,)] = [["tt.divisibility", 16]]
    return signature, attrs


#: Optional inputs of the attention kernels per head width: everything (user edge ids, bias, edge
#: vectors, dropout) at D = 64, plain at 32, edge vectors without dropout at 128 (the backward with one
#: shared edge tensor, ``FOLD_EDGE``), dropout on sorted edges at 256.
_ATTENTION_INPUTS = {
    64: dict(HAS_EID=True, HAS_BIAS=True, HAS_EK=True, HAS_EV=True, DROPOUT=True),
    32: dict(HAS_EID=False, HAS_BIAS=False, HAS_EK=False, HAS_EV=False, DROPOUT=False),
    128: dict(HAS_EID=True, HAS_BIAS=False, HAS_EK=True, HAS_EV=True, DROPOUT=False),
    256: dict(HAS_EID=False, HAS_BIAS=True, HAS_EK=False, HAS_EV=False, DROPOUT=True),
}

#: The gat and gatv2 scores (``SCORE``, :mod:`._common`): ``(score, width, normalisers, inputs, FOLD_EDGE)``;
#: gat has ``D = 1`` and no ``edge_k``, its values are ``width`` wide.
_SCORE_CASES = (
    (_common.GAT, 64, (_common.SOFTMAX, _common.SIGMOID),
     dict(HAS_EID=True, HAS_BIAS=True, HAS_EK=False, HAS_EV=True, DROPOUT=True), False),
    (_common.GATV2, 64, (_common.SOFTMAX, _common.SOFTPLUS), _ATTENTION_INPUTS[64], False),
    (_common.GATV2, 128, (_common.SOFTMAX,), _ATTENTION_INPUTS[128], True),
)


def kernel_cases(dtype: str = "bf16") -> Iterator[tuple[object, dict, int]]:
    """``(kernel, constexprs, num_warps)`` for every kernel, at the table's configurations."""
    from .schedule import launch_config

    for dim, mean_degree in ((64, 32.0), (32, 16.0), (128, 16.0), (256, 4.0)):
        cfg = launch_config(dim, 8, mean_degree)
        blocks = dict(BLOCK_E=cfg["BLOCK_E"], BLOCK_H=cfg["BLOCK_H"])
        tiles = dict(blocks, BLOCK_D=dim, BLOCK_DV=dim)
        attn = dict(tiles, **_ATTENTION_INPUTS[dim], SCORE=_common.DOT)
        for norm in ((_common.SOFTMAX, _common.SOFTPLUS, _common.SIGMOID) if dim == 64 else (_common.SOFTMAX,)):
            yield attention_fwd._attention_fwd_kernel, dict(attn, NORM=norm), cfg["num_warps"]
            yield attention_bwd._row_pass_kernel, dict(attn, NORM=norm, FOLD_EDGE=dim == 128), cfg["num_warps"]
        yield attention_bwd._column_pass_kernel, dict(tiles, **attention_bwd._column_flags(attn)), cfg["num_warps"]
        if dim == 64:
            yield sddmm._sddmm_kernel, dict(blocks, BLOCK_D=dim), cfg["num_warps"]
            yield spmm._spmm_kernel, dict(blocks, BLOCK_D=dim), cfg["num_warps"]
            yield _common._combine_kernel, dict(NORM=_common.SOFTMAX, HAS_STAT=True, HAS_ACC=True, BLOCK_H=8,
                                                BLOCK_F=dim), 4
            yield _common._combine_kernel, dict(NORM=_common.SUM, HAS_STAT=False, HAS_ACC=True, BLOCK_H=8,
                                                BLOCK_F=dim), 4
            for norm in (_common.SOFTMAX, _common.SUM):
                yield edge_softmax._row_stat_kernel, dict(NORM=norm, BLOCK_E=64, BLOCK_H=8), 4
            for grad in (False, True):
                yield edge_softmax._edge_kernel, dict(NORM=_common.SOFTMAX, GRAD=grad, BLOCK_E=256, BLOCK_H=8), 4
            yield elementwise_dropout._dropout_kernel, dict(BLOCK=elementwise_dropout.BLOCK), 4
    for score, width, norms, inputs, fold in _SCORE_CASES:
        cfg = launch_config(width, 8, 16.0)
        dim = dict(D=1, BLOCK_D=1) if score == _common.GAT else dict(BLOCK_D=width)
        tiles = dict(BLOCK_E=cfg["BLOCK_E"], BLOCK_H=cfg["BLOCK_H"], BLOCK_DV=width, **dim)
        attn = dict(tiles, **inputs, SCORE=score)
        for norm in norms:
            yield attention_fwd._attention_fwd_kernel, dict(attn, NORM=norm), cfg["num_warps"]
            yield attention_bwd._row_pass_kernel, dict(attn, NORM=norm, FOLD_EDGE=fold), cfg["num_warps"]
        yield attention_bwd._column_pass_kernel, dict(tiles, **attention_bwd._column_flags(attn)), cfg["num_warps"]
    tiles = dict(D=64, DV=64, BLOCK_M=64, BLOCK_N=64, BLOCK_D=64, BLOCK_DV=64)
    for kernel in (bsr._bsr_fwd_kernel, bsr._bsr_bwd_dq_kernel, bsr._bsr_bwd_dkdv_kernel):
        yield kernel, tiles, 4


def compile_kernel(kernel, constexprs: dict, num_warps: int, dtype: str = "bf16", arch: int = 90):
    """Compiles one kernel for ``sm_<arch>``; returns Triton's compiled kernel (``.asm`` has ptx/cubin)."""
    from triton.backends.compiler import GPUTarget

    if not isinstance(kernel, triton.runtime.JITFunction):
        raise RuntimeError("compile_check needs TRITON_INTERPRET unset (the kernels are interpreted functions)")
    target = GPUTarget("cuda", arch, 32)
    signature, attrs = _signature(kernel, dtype, constexprs)
    source = triton.compiler.ASTSource(fn=kernel, constexprs=dict(constexprs), signature=signature, attrs=attrs)
    options = triton.compiler.make_backend(target).parse_options({"num_warps": num_warps})
    return triton.compile(source, target=target, options=options.__dict__)


_DEFINITION = re.compile(r"^\s*(%[\w.$-]+)(?::\d+)?\s*=\s*([\w.]+)(.*)$")
_VALUE = re.compile(r"%[\w.$-]+")
_LOOP = re.compile(r"scf\.for\s+(%[\w.$-]+)\s*=\s*(\S+)\s+to\s+(\S+)")
_ITER_ARG = re.compile(r"(%[\w.$-]+)\s*=\s*(%[\w.$#-]+)")


def narrow_index_ops(ttir: str) -> list[str]:
    """The 32-bit ``arith.muli`` / ``arith.addi`` of a kernel's Triton IR that combine an index with a
    run-time value.

    Indices are the program id along the grid's first axis (rows, edges, tiles or work items), integers
    loaded from memory (index tensors), and whatever is computed from them, including the loops over
    them; ``arith.trunci`` (an explicit narrowing) ends an index. Compile-time values (constants, ranges
    and what is computed from them alone) may meet an index in 32 bits: they form tile positions such as
    ``pid * BLOCK_E + arange(BLOCK_E)``, which stay below :math:`2^{31}` for edges because a CSR holds at
    most :data:`~sparse_kernels.csr.MAX_EDGES` (a margin of :math:`2^{16}` below :math:`2^{31}`). Returns
    the offending IR lines (empty: every product and sum of an index with a run-time value is 64-bit).
    """
    index: set[str] = set()
    static: set[str] = set()
    found = []
    for line in ttir.splitlines():
        code = line.split(" loc(")[0]
        loop = _LOOP.search(code)
        if loop:
            if {_VALUE.match(v).group(0) for v in loop.group(2, 3) if _VALUE.match(v)} & index:
                index.add(loop.group(1))
            if "iter_args(" in code:
                for name, init in _ITER_ARG.findall(code.split("iter_args(", 1)[1]):
                    if init.split("#")[0] in index:
                        index.add(name)
        match = _DEFINITION.match(code)
        if not match:
            continue
        result, op, rest = match.groups()
        body, _, result_type = rest.rpartition(" : ")
        result_type = result_type.strip()
        uses = [v.split("#")[0] for v in _VALUE.findall(body if op != "scf.for" else "")]
        index.discard(result)
        static.discard(result)
        if op in ("arith.constant", "tt.make_range") or (uses and all(v in static for v in uses)):
            static.add(result)
        elif op == "tt.get_program_id":
            if rest.strip().startswith("x"):
                index.add(result)
        elif op == "tt.load":                            # typed by its pointers: ``!tt.ptr<i32>``
            if re.search(r"ptr<i(8|16|32|64)>", result_type):
                index.add(result)
        elif op != "arith.trunci" and any(v in index for v in uses):
            index.add(result)
            if (op in ("arith.muli", "arith.addi") and re.search(r"(^|x)i32>?$", result_type)
                    and not any(v in static for v in uses)):
                found.append(line.strip())
    return found


def _ptxas_info(ptx: str, arch: int) -> str:
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        err = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}a", f.name, "-o", os.devnull],
                             capture_output=True, text=True).stderr
    return ", ".join(re.findall(r"Used \d+ registers|\d+ bytes spill stores", err))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="compile every sparse_kernels Triton kernel for a GPU target")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp16", "fp32"])
    parser.add_argument("--ptxas-info", action="store_true", help="print registers and spills per kernel")
    args = parser.parse_args(argv)
    for dtype in args.dtypes:
        for kernel, constexprs, num_warps in kernel_cases(dtype):
            compiled = compile_kernel(kernel, constexprs, num_warps, dtype, args.arch)
            narrow = narrow_index_ops(compiled.asm["ttir"])
            info = _ptxas_info(compiled.asm["ptx"], args.arch) if args.ptxas_info else "ok"
            if narrow:
                info = "32-bit index arithmetic: " + " | ".join(narrow)
            print(f"{dtype} {kernel.fn.__name__} {constexprs} warps={num_warps}: {info}", flush=True)


if __name__ == "__main__":
    main()
