"""The kernel benchmark's CPU smoke mode and its graph generators (the GPU run is `benchmarks/kernels.py`)."""
import json
import os

import torch

from graphattn.bench import kernels


def test_cpu_smoke_run_writes_results(tmp_path):
    result = kernels.main(["--device", "cpu", "--quick", "--graphs", "uniform_1k", "--heads", "2",
                           "--methods", "graphattn", "pyg", "sdpa", "--out-dir", str(tmp_path)])
    stem = tmp_path / "kernels-cpu-quick"
    assert os.path.exists(f"{stem}.png") and os.path.exists(f"{stem}.md")
    saved = json.loads(open(f"{stem}.json").read())
    assert saved["device"].startswith("cpu") and saved["versions"]["torch"] == torch.__version__
    by_method = {r["method"]: r for r in result["rows"]}
    assert set(by_method) == {"graphattn", "pyg", "sdpa"}
    for row in by_method.values():
        assert "error" not in row and row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0
    assert max(by_method["graphattn"]["rel_err"].values()) < 1e-5 and not by_method["graphattn"]["nan"]


def test_rmat_is_power_law_and_uniform_is_not():
    rmat = kernels.rmat_graph(1024, 16384, torch.device("cpu"))
    uniform = kernels.uniform_graph(1024, 16384, torch.device("cpu"))
    assert rmat.shape == uniform.shape == (2, 16384) and int(rmat.max()) < 1024
    deg = lambda ei: torch.bincount(ei[1], minlength=1024).float()  # noqa: E731
    assert deg(rmat).max() > 8 * deg(rmat).mean() and deg(uniform).max() < 3 * deg(uniform).mean()
