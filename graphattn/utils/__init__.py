"""Utilities: cost accounting of graph models (FLOPs, measured inference time)."""
from .flops import FlopCount, count_flops
from .timing import time_inference

__all__ = ["FlopCount", "count_flops", "time_inference"]
