r"""Storing pruned weights compactly: structural removal of dead MLP units, sparse (CSR) linears."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SparseLinear", "shrink_mlp", "store_sparse"]


class SparseLinear(torch.nn.Module):
    r""":math:`\mathbf{y} = \mathbf{x}\mathbf{W}^\top + \mathbf{b}` with :math:`\mathbf{W}` stored as a
    CSR matrix (inference only; built from a pruned :class:`torch.nn.Linear`)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        out = torch.sparse.mm(self.weight, x.reshape(-1, self.in_features).t()).t()
        out = out.reshape(*shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_features}, {self.out_features}, nnz={self.nnz})"


@torch.no_grad()
def shrink_mlp(mlp: torch.nn.Sequential) -> bool:
    r"""Removes the hidden units of a ``Linear -> act -> [Dropout] -> Linear`` MLP that pruning made
    dead, exactly: a unit whose input row is zero outputs the constant :math:`\sigma(b_j)`, folded into
    the next bias; a unit whose output column is zero is dropped. Returns whether it shrank."""
    linears = [i for i, m in enumerate(mlp) if isinstance(m, torch.nn.Linear)]
    if len(linears) != 2 or any(type(mlp[i]) is not torch.nn.Linear for i in linears):
        return False
    (i, j), act = linears, mlp[linears[0] + 1]
    fc1, fc2 = mlp[i], mlp[j]
    dead_in = (fc1.weight == 0).all(1)
    dead = dead_in | (fc2.weight == 0).all(0)
    if not bool(dead.any()) or bool(dead.all()):
        return False
    if fc2.bias is not None and bool(dead_in.any()):
        const = act(fc1.bias[dead_in] if fc1.bias is not None else fc1.weight.new_zeros(int(dead_in.sum())))
        fc2.bias += fc2.weight[:, dead_in] @ const
    alive = (~dead).nonzero().view(-1)
    new1 = torch.nn.Linear(fc1.in_features, alive.numel(), bias=fc1.bias is not None).to(fc1.weight)
    new1.weight.copy_(fc1.weight[alive])
    if fc1.bias is not None:
        new1.bias.copy_(fc1.bias[alive])
    new2 = torch.nn.Linear(alive.numel(), fc2.out_features, bias=fc2.bias is not None).to(fc2.weight)
    new2.weight.copy_(fc2.weight[:, alive])
    if fc2.bias is not None:
        new2.bias.copy_(fc2.bias)
    mlp[i], mlp[j] = new1, new2
    return True


@torch.no_grad()
def store_sparse(module: torch.nn.Module, max_density: float) -> int:
    """Replaces every :class:`torch.nn.Linear` inside ``module`` whose weight density is at most
    ``max_density`` by a :class:`SparseLinear`; returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear) and child.weight.numel():
            if float((child.weight != 0).float().mean()) <= max_density:
                setattr(module, name, SparseLinear(child))
                replaced += 1
        else:
            replaced += store_sparse(child, max_density)
    return replaced
