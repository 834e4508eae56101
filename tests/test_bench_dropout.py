"""``graphattn bench dropout``: both sides train the one model, each with its own masks, and the command writes
its JSON (a smoke run on the embedded ogbg-molesol with a small model: not a measurement)."""
import json

import torch

from graphattn.bench.dropout import main


def test_bench_dropout_writes_both_sides_and_the_profiles(tmp_path, capsys):
    config = tmp_path / "small.yaml"
    config.write_text("dataset: ogbg-molesol\nmodel: mpnn-vn\nmodel_args: {channels: 16, num_layers: 2, "
                      "local_conv: gin, dropout: 0.5}\n")
    main(["--config", str(config), "--batches", "2", "--batch-size", "8", "--reps", "2", "--warmup", "1",
          "--profile", "4", "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / "dropout-cpu.json").read_text())
    assert result["dataset"] == "ogbg-molesol" and result["threads"] == torch.get_num_threads() == 1
    assert result["torch_dropout_ms"] > 0 and result["counter_dropout_ms"] > 0
    assert result["torch_over_counter"] == round(result["torch_dropout_ms"] / result["counter_dropout_ms"], 4)
    assert set(result["profiles"]) == {"counter-v1", "torch-bernoulli"}
    ops = {row["op"] for row in result["profiles"]["torch-bernoulli"]}
    assert len(result["profiles"]["counter-v1"]) == 4 and len(ops) == 4
    assert "counter dropout" in capsys.readouterr().out
