"""When a training run writes a checkpoint inside an epoch: every few minutes of wall-clock time, because a
stop may be a ``SIGKILL`` that leaves no chance to write one, and at once after ``SIGTERM``, after which the
run stops.

:func:`graphattn.training.fit` asks :meth:`CheckpointSchedule.due` after every optimiser step and, when it
answers yes, writes a mid-epoch checkpoint (resumed bit for bit) and calls :meth:`CheckpointSchedule.written`;
after a ``SIGTERM`` it then raises :class:`TrainingStopped`. The signal handler only sets a flag, so a
checkpoint being written when the signal arrives is finished first.
"""
from __future__ import annotations

import contextlib
import signal
import time
from typing import Iterator, Optional

__all__ = ["CheckpointSchedule", "TrainingStopped"]


class TrainingStopped(Exception):
    """Training stopped on ``SIGTERM`` after writing its checkpoint."""


class CheckpointSchedule:
    """Mid-epoch checkpoints every ``every_seconds`` (``None``: none on a timer), and one after ``SIGTERM``
    within :meth:`handling_sigterm`."""

    def __init__(self, every_seconds: Optional[float] = None):
        if every_seconds is not None and every_seconds < 0:
            raise ValueError(f"every_seconds must be >= 0, got {every_seconds}")
        self.every_seconds = every_seconds
        self.stop_requested = False
        self._last = time.monotonic()

    @contextlib.contextmanager
    def handling_sigterm(self) -> Iterator["CheckpointSchedule"]:
        """Within the block, ``SIGTERM`` requests a checkpoint and a stop instead of ending the process (main
        thread only); the previous handler comes back after it."""
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum, frame) -> None:
        self.stop_requested = True

    def due(self) -> bool:
        """Whether a checkpoint should be written now."""
        return self.stop_requested or (self.every_seconds is not None
                                       and time.monotonic() - self._last >= self.every_seconds)

    def written(self) -> None:
        """Restarts the timer after any checkpoint (the end of an epoch's too); raises
        :class:`TrainingStopped` when ``SIGTERM`` asked for a stop."""
        self._last = time.monotonic()
        if self.stop_requested:
            raise TrainingStopped("stopped by SIGTERM after writing the checkpoint")
