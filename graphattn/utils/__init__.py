"""Utilities: cost accounting of graph models (FLOPs, measured inference time), statistics over runs."""
from .flops import FlopCount, count_flops
from .stats import mean_std
from .timing import time_inference

__all__ = ["FlopCount", "count_flops", "mean_std", "time_inference"]
