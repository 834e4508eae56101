r"""time_inference: measured inference time of a graph model over a list of batches."""
from __future__ import annotations

import statistics
import time
from typing import Any, Iterable, Mapping

import torch

from ..models.inputs import model_inputs

__all__ = ["time_inference"]


@torch.no_grad()
def time_inference(model: torch.nn.Module, batches: Iterable[Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of one evaluation-mode pass of ``model`` over ``batches`` (PyG
    batches or keyword mappings, already on the model's device), after ``warmup`` passes.
    CUDA work is synchronised before each clock reading."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    inputs = [dict(b) if isinstance(b, Mapping) else model_inputs(b) for b in batches]
    was_training = model.training
    model.eval()

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    times = []
    try:
        for i in range(warmup + repeats):
            sync()
            begin = time.perf_counter()
            for kwargs in inputs:
                model(**kwargs)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - begin)
    finally:
        model.train(was_training)
    return statistics.median(times)
