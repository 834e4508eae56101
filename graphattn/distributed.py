"""Data-parallel training under ``torchrun``: process-group set-up, sharding, gathering.

``torchrun --nproc_per_node=K -m graphattn.cli train ...`` sets ``RANK``/``WORLD_SIZE``;
:func:`init_distributed` then joins the process group (``nccl`` on GPUs, ``gloo`` on the
CPU) and gives each rank its device. Evaluation shards the graphs without padding and
gathers predictions on every rank, so all ranks compute the same official metric.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "shard_indices", "gather_objects"]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str = "auto") -> DistContext:
    """Joins the ``torchrun`` process group when ``WORLD_SIZE > 1``; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = _pick_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world_size, dev)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(num_items: int, ctx: DistContext) -> torch.Tensor:
    """This rank's items ``rank, rank + world, ...`` (no padding, unlike ``DistributedSampler``)."""
    return torch.arange(ctx.rank, num_items, ctx.world_size)


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
