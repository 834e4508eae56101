"""`graphattn train`: runs, logs, resumes, data-parallel agreement, clean errors."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims

from graphattn.config import ConfigError, builtin_config_path, load_config
from graphattn.train_cli import build_model

CONFIGS = sorted(p.stem for p in Path(builtin_config_path("x")).parent.glob("*.yaml"))


def _env(tmp_path):
    return {**os.environ, "GRAPHATTN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "OUTDATED_IGNORE": "1"}


def _train(tmp_path, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "graphattn.cli", "train", "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout, env=_env(tmp_path))


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_build_their_models(name):
    config = load_config(name)
    model = build_model(config, num_tasks=10)
    assert sum(p.numel() for p in model.parameters()) > 0


def _parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_gin_vn_molhiv_has_ogbs_parameter_count():
    """OGB's gin-virtual on molhiv (5 layers, emb 300, 1 task), counted from the architecture."""
    model = build_model(load_config("gin-vn-molhiv"), num_tasks=1)
    c, layers = 300, 5
    atom, bond = sum(get_atom_feature_dims()), sum(get_bond_feature_dims())
    gin = (c * 2 * c + 2 * c) + 2 * (2 * c) + (2 * c * c + c) + 1       # Linear, BN(2C), Linear, eps
    per_layer = gin + bond * c + 2 * c                                    # + its BondEncoder + BN(C)
    vn_mlp = (c * 2 * c + 2 * c) + 2 * (2 * c) + (2 * c * c + c) + 2 * c   # Linear, BN(2C), Linear, BN(C)
    expected = atom * c + layers * per_layer + c + (layers - 1) * vn_mlp + (c + 1)   # + vn embedding, head
    assert _parameters(model) == expected == 3_336_606
    # OGB's leaderboard lists 3,336,306: ogb < 1.3.6 had 4 chirality categories (1.3.6 added 'misc')
    assert expected - c * (get_atom_feature_dims()[1] - 4) == 3_336_306


def test_gps_molhiv_has_graphgps_parameter_count():
    """GraphGPS reports 558,625 parameters for GPS on ogbg-molhiv (ogb < 1.3.6: one atom row fewer)."""
    model = build_model(load_config("gps-molhiv"), num_tasks=1)
    atom_width = 64 - 16                                                  # Atom+RWSE: 48 || 16
    assert _parameters(model) - atom_width * (get_atom_feature_dims()[1] - 4) == 558_625


@pytest.mark.slow
def test_train_embedded_molesol_writes_logs_and_resumes(tmp_path):
    out = tmp_path / "run"
    first = _train(tmp_path, "--dataset", "ogbg-molesol", "--epochs", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r"ogbg-molesol / gps: test rmse [\d.]+", first.stdout.splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["runs"][0]["best_epoch"] == 1
    assert (out / "seed0" / "last.pt").exists() and (out / "seed0" / "best.pt").exists()
    second = _train(tmp_path, "--dataset", "ogbg-molesol", "--epochs", "2", "--out", str(out), "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed" in second.stdout and "epoch   2" in second.stdout
    assert len((out / "seed0" / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--dataset", "ogbg-nonexistent"], "unknown OGB graph dataset"),
    (["--dataset", "cora"], "unknown dataset"),
    (["--dataset", "ogbg-molhiv", "--root", "/nonexistent"], "missing"),
    (["--config", "/nonexistent.yaml"], "not found"),
])
def test_errors_are_one_line(tmp_path, args, message):
    result = _train(tmp_path, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_bad_config_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'lrr' in optim"):
        load_config(str(bad))
    bad.write_text("model_args:\n  chanels: 3\n")
    result = _train(tmp_path, "--config", str(bad), "--epochs", "1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "unknown model_args 'chanels'" in result.stderr


@pytest.mark.slow
def test_torchrun_two_ranks_agree(tmp_path):
    logs = tmp_path / "logs"             # one stdout file per rank: the ranks' lines never interleave
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
         "--log-dir", str(logs), "--redirects", "1", "-m",
         "graphattn.cli", "train", "--dataset", "ogbg-molesol", "--model", "mpnn-vn", "--epochs", "1",
         "--no-progress"], capture_output=True, text=True, timeout=900, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    stdout = "".join(path.read_text() for path in sorted(logs.rglob("stdout.log")))
    lines = {m.group(1): m.group(2) for m in re.finditer(r"\[rank (\d)\] .*test rmse ([\d.]+)", stdout)}
    assert set(lines) == {"0", "1"} and lines["0"] == lines["1"]
