"""Checkpoints that resume a training run exactly, written so that a kill at any moment leaves a
consistent state.

* :func:`atomic_save` / :func:`atomic_write_text` / :func:`atomic_write_bytes` write to a temporary file in the
  same folder, flush it to disk and ``os.replace`` it over the target: a reader sees the old file or the new one,
  never a partial one.
* :func:`rng_state` / :func:`set_rng_state` capture every random number generator a training step
  draws from (PyTorch's CPU and CUDA generators, Python's ``random``, NumPy's, and the data loader's
  shuffling generator), so that training resumed from an epoch boundary draws exactly what the
  uninterrupted run drew, and the name of the generator of the models' dropout masks
  (:func:`graphattn.functional.dropout_generator`): :func:`check_dropout_generator` refuses to resume a run
  whose masks another generator drew (its continuation would be neither run).
* :func:`load_checkpoint` turns an unreadable file into one :class:`CheckpointError` line naming it.
* :func:`crash_point` is a fault-injection point for tests: ``GRAPHATTN_CRASH_AT=<name>`` makes the
  process exit abruptly (as ``SIGKILL`` would) when it reaches the point called ``<name>``.
"""
from __future__ import annotations

import io
import os
import random
import tempfile
from typing import Any, Optional

import numpy as np
import torch

from .functional import dropout_generator

__all__ = ["CheckpointError", "atomic_save", "atomic_write_text", "atomic_write_bytes", "load_checkpoint", "rng_state",
           "set_rng_state", "check_dropout_generator", "crash_point"]

#: The dropout generator of checkpoints that record none: PyTorch's ``bernoulli_`` (``F.dropout``).
_UNRECORDED_DROPOUT = "torch-bernoulli"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read; the message names the file."""


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic_write(path, buffer.getvalue())


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    _atomic_write(path, text.encode())


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    _atomic_write(path, data)


def load_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """The checkpoint at ``path``.

    Raises:
        CheckpointError: the file is truncated, corrupt or not a graphattn checkpoint.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}); "
                              f"delete it to start this run over") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise CheckpointError(f"{path}: not a graphattn training checkpoint")
    return state


def rng_state(loader_generator: Optional[torch.Generator] = None) -> dict:
    """Every generator a training step draws from."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python": random.getstate(), "numpy": np.random.get_state(),
            "loader": None if loader_generator is None else loader_generator.get_state(),
            "dropout": dropout_generator()}


def check_dropout_generator(state: dict, path: str) -> None:
    """Raises :class:`CheckpointError` (one line naming ``path`` and both generators) when the checkpoint
    ``state`` was made with another dropout generator than the one in use."""
    made = state["rng"].get("dropout", _UNRECORDED_DROPOUT)
    if made != dropout_generator():
        raise CheckpointError(f"{path}: made with the dropout generator {made!r}, but this run draws dropout masks "
                              f"with {dropout_generator()!r}; resume with GRAPHATTN_DROPOUT={made} or start over in "
                              f"another --out")


def set_rng_state(state: dict, loader_generator: Optional[torch.Generator] = None) -> None:
    """Restores what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if loader_generator is not None and state["loader"] is not None:
        loader_generator.set_state(state["loader"].cpu())


def crash_point(name: str) -> None:
    """Exits the process at once (status 137, no cleanup, like ``SIGKILL``) when ``GRAPHATTN_CRASH_AT``
    is ``name``: the tests kill a run at chosen points this way."""
    if os.environ.get("GRAPHATTN_CRASH_AT") == name:
        os._exit(137)
