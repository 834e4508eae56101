"""Examples, benchmarks and commands end in one line naming the file when their data is missing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    ["examples/gtsp_molhiv.py", "--root", "{missing}"],
    ["examples/finetune_sst2.py", "--data", "{missing}"],
    ["examples/train_molesol_models.py", "--root", "{missing}"],
    ["examples/pyg_integration.py", "--root", "{missing}"],
    ["-m", "graphattn", "train", "--dataset", "ogbg-molhiv", "--root", "{missing}"],
    ["-m", "graphattn", "bench", "models", "--dataset", "ogbg-molhiv", "--root", "{missing}", "--device", "cpu"],
    ["-m", "graphattn", "bench", "layers", "--dataset", "ogbg-molhiv", "--root", "{missing}", "--device", "cpu"],
]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:4]))
def test_missing_data_is_one_line(command, tmp_path):
    missing = str(tmp_path / "no-such-folder")
    args = [a.replace("{missing}", missing) for a in command]
    env = {**os.environ, "GRAPHATTN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  ")]
    assert result.returncode != 0
    assert len(lines) == 1 and "error:" in lines[0] and "no-such-folder" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
