"""The stdlib char-LM example: fixed split by file, and one tiny training run in-process."""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example():
    spec = importlib.util.spec_from_file_location("seq_char_lm", os.path.join(ROOT, "examples", "seq_char_lm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["window", "routing"])
def test_char_lm_trains_on_stdlib_text(variant):
    lm = _example()
    args = lm.parse_args(["--context", "128", "--steps", "2", "--eval-windows", "1", "--dim", "16",
                          "--heads", "2", "--depth", "1", "--window", "8", "--topk", "8", "--log-every", "0"])
    result = lm.train_variant(variant, args)
    corpus = result["corpus"]
    assert corpus["files"]["train"] > 5 * corpus["files"]["valid"] > 0
    assert 0 < result["valid_bpc"] < 9 and result["step_s"] > 0
