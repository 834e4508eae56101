"""On a GPU: the BSR path in bf16/fp16 against dense masked SDPA in float32, and the automatic choice.

Skipped without CUDA (CI) or under the interpreter; a GPU session runs
``TRITON_INTERPRET=0 pytest tests/test_bsr_gpu.py`` before timing.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from graphattn import graph_attention
from graphattn.functional import explain
from graphattn.seq import Causal, GlobalTokens, SlidingWindow, random

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") == "1",
                                reason="needs a CUDA GPU and the interpreter off (TRITON_INTERPRET=0)")

PATTERNS = [SlidingWindow(256), SlidingWindow(512, causal=True) | GlobalTokens(4, causal=True), Causal()]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
@pytest.mark.parametrize("n", [1000, 4096])
def test_bsr_path_matches_reference_on_gpu(pattern, n, dtype):
    graph = pattern.graph(n, "cuda")
    heads, d = 4, 64
    q, k, v = (torch.randn(n, heads, d, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    assert explain(q, k, v, graph)["path"] == "bsr"
    out = graph_attention(q, k, v, graph)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    leaves = [x.detach().float().requires_grad_() for x in (q, k, v)]
    ref = F.scaled_dot_product_attention(*(x.transpose(0, 1) for x in leaves), attn_mask=graph.to_dense())
    ref = ref.transpose(0, 1)
    ref_grads = torch.autograd.grad(ref, leaves, g.float())
    tol = 2e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.float(), b, atol=5 * tol, rtol=5 * tol)


def test_irregular_graph_keeps_csr_on_gpu():
    graph = random(4096, 8, device="cuda")
    q = torch.randn(4096, 4, 64, device="cuda", dtype=torch.bfloat16)
    assert explain(q, q, q, graph) == {"path": "csr", "kernel": "triton"}
