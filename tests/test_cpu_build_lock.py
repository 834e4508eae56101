"""Building the CPU kernels on a fresh cache: one compile for processes side by side, and a compile that runs
past ``GRAPHATTN_CC_TIMEOUT`` fails with a message naming it."""
import subprocess
import threading
import time

import pytest

from sparse_kernels import cpu


def test_builders_side_by_side_compile_once(tmp_path, monkeypatch):
    calls = []

    def slow_compile(compiler, flags, target):
        calls.append(target)
        time.sleep(0.5)                       # the others arrive while this one compiles
        (tmp_path / "cache" / "lib.so").write_bytes(b"built")

    monkeypatch.setattr(cpu, "_compile", slow_compile)
    target = str(tmp_path / "cache" / "lib.so")
    builders = [threading.Thread(target=cpu._build_once, args=("cc", [], target)) for _ in range(4)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    assert calls == [target]
    cpu._build_once("cc", [], target)        # a later process finds the library
    assert calls == [target]


def test_a_compile_past_the_timeout_names_the_setting(tmp_path, monkeypatch):
    compiler = tmp_path / "slow-cc"
    compiler.write_text("#!/bin/sh\nexec sleep 30\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("GRAPHATTN_CC_TIMEOUT", "0.5")
    started = time.monotonic()
    with pytest.raises(subprocess.SubprocessError, match=r"ran past 0.5 s \(raise GRAPHATTN_CC_TIMEOUT"):
        cpu._build_once(str(compiler), [], str(tmp_path / "lib.so"))
    assert time.monotonic() - started < 20
    assert not (tmp_path / "lib.so").exists()


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_bad_timeout_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("GRAPHATTN_CC_TIMEOUT", value)
    with pytest.raises(RuntimeError, match="GRAPHATTN_CC_TIMEOUT must be a positive number of seconds"):
        cpu._compile_timeout()
