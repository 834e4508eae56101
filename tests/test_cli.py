"""The `graphattn` command."""
import importlib
import subprocess
import sys

import pytest

from graphattn.cli import BENCHMARKS, USAGE, main


def test_help_lists_commands(capsys):
    main([])
    out = capsys.readouterr().out
    assert "demo" in out and "train" in out and "bench kernels" in out


def test_every_benchmark_is_listed_and_runs_a_main():
    for name, module in BENCHMARKS.items():
        assert f"bench {name} " in USAGE
        assert callable(importlib.import_module(f"graphattn.bench.{module}").main)


def test_version(capsys):
    import graphattn

    main(["--version"])
    assert capsys.readouterr().out.strip() == f"graphattn {graphattn.__version__}"


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert "unknown command" in str(info.value.code)


@pytest.mark.slow
def test_demo_runs_to_final_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "graphattn.cli", "demo", "--epochs", "1", "--no-progress"],
                            capture_output=True, text=True, timeout=600,
                            env={"GRAPHATTN_CACHE": str(tmp_path), "OUTDATED_IGNORE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test RMSE" in result.stdout.strip().splitlines()[-1]
