r"""Ahead-of-time compilation of every kernel for a GPU target, without a GPU.

The interpreter accepts code that the compiler rejects (for instance a global read that is not a
``constexpr``), so a CPU-only CI also compiles each kernel to a cubin for ``sm_90`` with the
launch configurations the table picks, and can report registers and spills (``ptxas -v``)::

    TRITON_INTERPRET=0 python -m sparse_kernels.triton.compile_check --ptxas-info

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

from . import _common, attention_bwd, attention_fwd, edge_softmax, sddmm, spmm

__all__ = ["kernel_cases", "compile_kernel", "main"]

_INDEX = {"items_ptr": "i32", "splits_ptr": "i32", "col_ptr": "i64", "row_t_ptr": "i64", "perm_t_ptr": "i64",
          "segment_ptr": "i64", "gather_ptr": "i64", "eid_ptr": "i64", "seed_ptr": "i64"}
_FP32 = {"stat_ptr", "delta_ptr", "pm_ptr", "pl_ptr", "pacc_ptr", "pdq_ptr", "pdk_ptr", "pdv_ptr", "pout_ptr",
         "ds_ptr", "w_ptr", "datt_ptr"}
_FP32_SCALARS = {"scale", "keep_scale", "slope"}


def _signature(kernel, dtype: str, constexprs: dict) -> tuple[dict, dict]:
    """Argument types by naming convention: index pointers, fp32 scratch, features in ``dtype``;
    ``scale``, ``slope`` and ``keep_scale`` fp32, other scalars i32 (widths hinted divisible by 16, as at
    run time for D = 16k; a width of 1, the gat score's ``D``, is a ``constexpr`` as Triton specialises it)."""
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
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
    for score, width, norms, inputs, fold in _SCORE_CASES:
        cfg = launch_config(width, 8, 16.0)
        dim = dict(D=1, BLOCK_D=1) if score == _common.GAT else dict(BLOCK_D=width)
        tiles = dict(BLOCK_E=cfg["BLOCK_E"], BLOCK_H=cfg["BLOCK_H"], BLOCK_DV=width, **dim)
        attn = dict(tiles, **inputs, SCORE=score)
        for norm in norms:
            yield attention_fwd._attention_fwd_kernel, dict(attn, NORM=norm), cfg["num_warps"]
            yield attention_bwd._row_pass_kernel, dict(attn, NORM=norm, FOLD_EDGE=fold), cfg["num_warps"]
        yield attention_bwd._column_pass_kernel, dict(tiles, **attention_bwd._column_flags(attn)), cfg["num_warps"]


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
            info = _ptxas_info(compiled.asm["ptx"], args.arch) if args.ptxas_info else "ok"
            print(f"{dtype} {kernel.fn.__name__} {constexprs} warps={num_warps}: {info}", flush=True)


if __name__ == "__main__":
    main()
