"""The README runs as pasted: every ``python`` and ``bash`` block is executed here, verbatim, in a fresh
folder (``text`` blocks are not code).

Bash blocks run with ``.venv`` linked to the environment running the tests, and ``DATA`` pointing to small
datasets in the official release layouts (``ogbg_molhiv/`` from OGB, ``lrgb-peptides-func/`` from LRGB),
built here: the commands are the user's, the data is the shape of theirs. The one line not run is
``make test``: it is the command this suite runs under (``.ci/run``).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ogb_release, peptides_release

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
LANGUAGES = {"python", "bash", "text"}
PEPTIDES = ["CC(=O)NC", "NCC(=O)O", "CCO", "c1ccccc1O", "CC(N)C(=O)O", "NCC(=O)NCC(=O)O", "CC(C)C(N)C(=O)O",
            "OCC(N)C(=O)O", "CCCC", "c1ccncc1", "CC(=O)O", "NC(CS)C(=O)O"]


def _blocks() -> list[tuple[int, str, str]]:
    text = (REPO / "README.md").read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def _id(block) -> str:
    line, language, code = block
    return f"line{line}-{language}"


def test_every_block_is_python_bash_or_text():
    blocks = _blocks()
    assert len(blocks) >= 8
    assert {language for _, language, _ in blocks} <= LANGUAGES, [b[:2] for b in blocks]
    assert sum(code.count("```") for _, _, code in blocks) == 0


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "GRAPHATTN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "OUTDATED_IGNORE": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in _blocks() if b[1] == "python"], ids=_id)
def test_python_block_runs(tmp_path, block):
    line, _, code = block
    result = subprocess.run([sys.executable, "-"], input=code, cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, env=_env(tmp_path))
    assert result.returncode == 0, f"README line {line}:\n{result.stderr[-3000:]}"


@pytest.fixture
def data(tmp_path) -> Path:
    """``ogbg_molhiv/`` (24 molecules of the embedded ogbg-molesol with 0/1 labels) and a 12-peptide
    ``lrgb-peptides-func/``."""
    root = tmp_path / "data"
    ogb_release(root, "ogbg_molhiv", split={"train": range(0, 8), "valid": range(8, 16), "test": range(16, 24)},
                labels=[str(i % 2) for i in range(24)])
    peptides_release(root / "lrgb-peptides-func", PEPTIDES,
                     {"train": range(0, 6), "valid": range(6, 9), "test": range(9, 12)})
    return root


def _venv() -> Path:
    """The virtual environment running the tests (``make test``'s ``.venv``)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment: the README's commands assume .venv")
    return Path(sys.prefix)


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in _blocks() if b[1] == "bash"], ids=_id)
def test_bash_block_runs(tmp_path, data, block):
    line, _, code = block
    lines = code.splitlines()
    if any(re.match(r"make (demo|test)\b", command) for command in lines):
        # the two commands of a fresh machine run in the repository; `make test` is this suite's own command
        cwd, lines = REPO, [command for command in lines if not command.startswith("make test")]
        if not (REPO / ".venv" / ".installed").exists():
            pytest.skip("no .venv installed by make in this checkout")
    else:
        cwd = tmp_path / "work"
        cwd.mkdir()
        (cwd / ".venv").symlink_to(_venv(), target_is_directory=True)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=cwd, capture_output=True,
                            text=True, timeout=1800, env={**_env(tmp_path), "DATA": str(data)})
    assert result.returncode == 0, f"README line {line}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    if "graphattn --version" in code:
        assert re.search(r"^graphattn \d+\.\d+", result.stdout, re.M), result.stdout
