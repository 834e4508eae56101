"""Test configuration.

``TRITON_INTERPRET=1`` must be set before any Triton kernel is defined, so that kernel
tests run on the CPU in Triton's interpreter (CI has no GPU).
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OUTDATED_IGNORE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
