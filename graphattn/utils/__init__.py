"""Utilities: cost accounting of graph models."""
from .flops import FlopCount, count_flops

__all__ = ["FlopCount", "count_flops"]
