"""``graphattn bench gat``: the model pairs are the same models, and the command writes its JSON (tiny sizes:
a smoke run, not a measurement). Cora's loader is tested in tests/test_planetoid.py."""
import json

import pytest
import torch

from graphattn.bench.gat import main, model_pair, random_data

@pytest.mark.parametrize("layer", ["gat", "gatv2"])
def test_model_pairs_agree(layer):
    data = random_data(50, 400, 12)
    ours, pyg = (m.eval() for m in model_pair(layer, 12, 8, 8, 0.6))
    torch.testing.assert_close(ours(data.x, data.edge_index), pyg(data.x, data.edge_index), atol=1e-5, rtol=1e-4)


@pytest.mark.slow                # the memory runs start subprocesses
def test_bench_gat_writes_rows(tmp_path, capsys):
    main(["--datasets", "random", "--random-nodes", "60", "--random-edges", "500", "--random-features", "8",
          "--reps", "2", "--rss-steps", "1", "--layers", "gat", "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / "gat-cpu.json").read_text())
    (row,) = result["rows"]
    assert row["comparison"] == "gat" and row["edges"] == 500 and row["graphattn_ms"] > 0 and row["pyg_ms"] > 0
    assert row["graphattn_peak_growth_mb"] is not None and row["pyg_peak_growth_mb"] is not None
    assert "PyG/graphattn" in capsys.readouterr().out
