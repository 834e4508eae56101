"""Every Triton kernel compiles to a cubin for sm_90 (H100) with the table's launch configurations, and
forms every product or sum of a row/edge index with a run-time size in 64 bits.

The interpreter accepts code the GPU compiler rejects, so this runs the real compiler (no GPU
needed) in a subprocess without ``TRITON_INTERPRET``. The 64-bit index arithmetic is read from the
kernels' Triton IR (``compile_check.narrow_index_ops``) rather than by launching one program at a high
row over a sparse-file tensor: the IR check covers every kernel and configuration at once, including
the BSR kernels, whose grid always starts at row block 0 and so cannot be launched at a high row alone.
"""
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Two versions of one gather-scatter kernel: 32-bit ``row * H`` and ``j * H`` (flagged) and the widened
#: one (clean; its ``.to(tl.uint32)`` hash, as in the dropout, wraps on purpose and is not an index).
CHECKER_SCRIPT = r'''
import triton
import triton.language as tl
from sparse_kernels.triton.compile_check import compile_kernel, narrow_index_ops


@triton.jit
def narrow(items_ptr, x_ptr, out_ptr, H, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    j = tl.load(items_ptr + rows)
    tl.store(out_ptr + rows * H, tl.load(x_ptr + j * H))


@triton.jit
def wide(items_ptr, x_ptr, out_ptr, H, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    j = tl.load(items_ptr + rows)
    hashed = (j.to(tl.uint32) * 0x7FEB352D) >> 8
    tl.store(out_ptr + rows.to(tl.int64) * H, tl.load(x_ptr + j.to(tl.int64) * H) + hashed.to(tl.float32))


for kernel, flagged in ((narrow, 2), (wide, 0)):
    found = narrow_index_ops(compile_kernel(kernel, dict(BLOCK=128), 4, "fp32").asm["ttir"])
    assert len(found) == flagged and all(" arith.muli " in line for line in found), found
print("checked")
'''


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    proc = _run(["-m", "sparse_kernels.triton.compile_check", "--dtypes", "bf16", "fp32"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) > 40 and all(line.endswith(": ok") for line in lines), \
        "\n".join(line for line in lines if not line.endswith(": ok"))[-3000:]


def test_index_check_flags_32_bit_row_products(tmp_path):
    script = tmp_path / "index_check.py"        # a file: Triton reads a kernel's source from it
    script.write_text(CHECKER_SCRIPT)
    proc = _run([str(script)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checked" in proc.stdout
