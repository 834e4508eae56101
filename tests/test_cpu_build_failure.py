"""A C compiler that fails: the engine warns once, with the compiler's message, then runs the reference."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow      # a fresh interpreter, so that the library is built anew


def test_failed_build_warns_once_with_the_compiler_message(tmp_path):
    compiler = tmp_path / "broken-cc"
    compiler.write_text("#!/bin/sh\necho 'broken-cc: fatal error: no space left for kernels' >&2\nexit 1\n")
    compiler.chmod(0o755)
    script = textwrap.dedent("""
        import warnings
        import torch
        import sparse_kernels as sk
        q = torch.randn(4, 2, 8)
        csr = sk.build_csr(torch.tensor([[0, 1, 2], [1, 2, 3]]), 4, 4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = sk.attention(q, q, q, csr)
            sk.attention(q, q, q, csr)
        mine = [w for w in caught if "compiled CPU kernels are unavailable" in str(w.message)]
        assert len(mine) == 1, [str(w.message) for w in caught]
        assert issubclass(mine[0].category, RuntimeWarning)
        assert "no space left for kernels" in str(mine[0].message)
        assert sk.explain(q, q, q, csr)["kernel"] == "reference"
        print("ok", float(out.abs().sum()) > 0)
    """)
    env = dict(os.environ, CC=str(compiler), GRAPHATTN_CACHE=str(tmp_path / "cache"), GRAPHATTN_CPU_KERNELS="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok True"
