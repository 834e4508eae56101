"""``graphattn bench gat``: the model pairs are the same models, Cora loads from a copy, and the command
writes its JSON (tiny sizes: a smoke run, not a measurement)."""
import json
import os

import pytest
import torch

from graphattn.bench.gat import load_cora, main, model_pair, random_data

from helpers import shared_data

CORA_RAW = shared_data("planetoid", "Cora", "raw")


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


@pytest.mark.skipif(CORA_RAW is None, reason="Planetoid Cora not given (GRAPHATTN_SHARED_DATA)")
def test_cora_loads_from_a_copy(tmp_path):
    data = load_cora(str(CORA_RAW.parents[1]), str(tmp_path))
    assert (data.num_nodes, data.num_edges, data.num_features) == (2708, 10556, 1433)
    assert os.path.isdir(tmp_path / "Cora" / "processed")
