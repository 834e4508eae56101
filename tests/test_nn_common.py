"""Shared helpers of the layer and model tests (no tests here)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data


def random_graph(num_nodes: int, num_edges: int, channels: int, edge_dim: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> Data:
    """Random directed multigraph (self-loops allowed) with float features."""
    edge_index = (torch.randint(0, num_nodes, (2, num_edges)) if num_nodes
                  else torch.zeros(2, 0, dtype=torch.long))
    data = Data(x=torch.randn(num_nodes, channels, dtype=dtype), edge_index=edge_index, num_nodes=num_nodes)
    if edge_dim is not None:
        data.edge_attr = torch.randn(num_edges, edge_dim, dtype=dtype)
    return data


def random_batch(sizes: Sequence[int], channels: int, edge_dim: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> Batch:
    return Batch.from_data_list([random_graph(n, 3 * n, channels, edge_dim, dtype) for n in sizes])


def permute(data: Data, perm: Tensor) -> Data:
    """Relabels node ``perm[k]`` as ``k``: node features ``x[perm]``, edges mapped, edge order kept."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out = data.clone()
    for key, value in data.items():
        if torch.is_tensor(value) and data.is_node_attr(key) and key != "edge_index":
            out[key] = value[perm]
    out.edge_index = inv[data.edge_index]
    return out


def assert_grads_everywhere(module: torch.nn.Module) -> None:
    missing = [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not
                                                                                torch.isfinite(p.grad).all())]
    assert not missing, f"no (finite) gradient for {missing}"
    zero = [n for n, p in module.named_parameters() if p.requires_grad and p.grad.abs().sum() == 0]
    assert not zero, f"zero gradient for {zero}"


def assert_per_graph(fn: Callable[[Data], Tensor], batch: Batch, atol: float = 1e-5) -> None:
    """``fn`` on the whole batch equals ``fn`` on each graph alone (node-level outputs)."""
    full = fn(batch)
    for g, data in enumerate(batch.to_data_list()):
        alone = fn(Batch.from_data_list([data]))
        torch.testing.assert_close(full[batch.batch == g], alone, atol=atol, rtol=1e-4)
