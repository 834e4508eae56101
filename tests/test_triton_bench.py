"""The kernel benchmark's CPU smoke mode and its graph generators (the GPU run is `graphattn bench kernels`)."""
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


def test_acceptance_checks_and_tables_from_rows():
    """The GPU report's pure parts, on made-up rows (errors and skips included)."""
    def row(graph, method, fwd_bwd, peak, **extra):
        return dict(graph=graph, nodes=1, edges=1000 if graph.startswith("uniform") else 1200, dtype="bf16",
                    heads=8, dim=64, method=method, fwd_ms=fwd_bwd / 3, fwd_bwd_ms=fwd_bwd,
                    fwd_bwd_peak_mb=peak, **extra)
    rows = [row("uniform_65k", "graphattn", 4.0, 100.0, floor_fraction=0.6, rel_err={"out": 3e-3}, nan=False),
            row("uniform_65k", "pyg", 52.0, 13800.0), row("uniform_65k", "pyg_compiled", 151.0, 5000.0),
            row("rmat_65k", "graphattn", 6.0, 100.0, rel_err={"out": 4e-3}, nan=False),
            dict(graph="uniform_1m", nodes=1, edges=1, dtype="bf16", heads=8, dim=64, method="pyg", error="OOM"),
            dict(graph="uniform_1m", nodes=1, edges=1, dtype="bf16", heads=8, dim=64, method="flex",
                 skipped="N > --dense-max 65536")]
    checks = {c["check"]: c for c in kernels.acceptance_checks(rows)}
    assert checks["uniform_65k: fwd+bwd speed-up vs pyg >= 10x"]["ok"] is True
    assert checks["uniform_65k: fwd+bwd speed-up vs pyg_compiled >= 4x"]["value"] == 37.75
    assert checks["uniform_65k: peak memory / PyG eager <= 1/8"]["ok"] is True
    assert checks["rmat_65k: power-law time per edge <= 1.5x uniform"]["value"] == 1.25
    assert checks["uniform_262k: fwd+bwd speed-up vs pyg >= 10x"]["ok"] is None  # not measured
    assert checks["uniform_1m (1M/16.8M): fwd+bwd runs"]["ok"] is None
    assert checks["bf16 rel. error vs fp32 reference < 1e-2, no NaN (all graphs, out and grads)"]["ok"] is True
    result = dict(device="test", versions={"torch": "x", "triton": "y"}, heads=8, copy_TBps=None,
                  graphattn_engine="Triton kernels", rows=rows)
    table = kernels.markdown_table(result)
    assert table.count("\n| ") == len(rows) + 1 and "OOM" in table
    assert all(kernels.format_row(r) for r in rows)
