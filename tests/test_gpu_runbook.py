"""benchmarks/gpu/run.sh: every documented stage has a branch, and an unknown stage is an error."""
import pathlib
import re
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "run.sh"


def test_documented_stages_have_branches():
    text = SCRIPT.read_text()
    documented = re.findall(r"^#   (\w+) ", text, flags=re.M)
    branches = re.findall(r"^    (\w+)\)", text, flags=re.M)
    listed = re.search(r'^STAGES="([^"]+)"', text, flags=re.M).group(1).split()
    assert documented and documented == branches == listed


@pytest.mark.slow
def test_unknown_stage_fails(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "no-such-stage"], capture_output=True, text=True,
                            env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "unknown stage no-such-stage" in result.stderr
