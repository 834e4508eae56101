"""The keyword arguments the ready-made models take, read from a PyG ``Data``/``Batch``."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["model_inputs", "resolve_batch"]

_OPTIONAL = ("edge_attr", "lap_pe", "rwse", "virtual_mask")


def model_inputs(data: Any) -> Dict[str, Any]:
    """``x``, ``edge_index``, ``batch``, ``num_graphs`` (a Python int, so that a compiled model
    never syncs on it) and whichever of ``edge_attr``, ``lap_pe``, ``rwse``, ``virtual_mask`` the
    data carries: call ``model(**model_inputs(batch))``."""
    out: Dict[str, Any] = {"x": data.x, "edge_index": data.edge_index}
    batch = getattr(data, "batch", None)
    if batch is not None:
        out["batch"] = batch
        out["num_graphs"] = int(data.num_graphs)
    for key in _OPTIONAL:
        value = getattr(data, key, None)
        if value is not None:
            out[key] = value
    return out


def resolve_batch(batch: Optional[Tensor], num_nodes: int, num_graphs: Optional[int],
                  device: torch.device) -> Tuple[Tensor, int]:
    """``(batch, num_graphs)`` for a model's forward: one graph when ``batch`` is ``None``;
    ``num_graphs`` read from ``batch`` only when not given (that read syncs the device)."""
    if batch is None:
        return torch.zeros(num_nodes, dtype=torch.long, device=device), 1
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    return batch, num_graphs
