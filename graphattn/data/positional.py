r"""Positional and structural encodings, computed once per graph and cached with the dataset.

* :class:`AddLapPE` — Laplacian eigenvectors (Dwivedi & Bresson): the ``k`` eigenvectors of
  :math:`L = I - D^{-1/2} A D^{-1/2}` with the smallest non-trivial eigenvalues, ascending;
  dense ``eigh`` for small graphs, ``scipy.sparse.linalg.eigsh`` on the sparse Laplacian above
  ``dense_threshold`` nodes (no :math:`N \times N` matrix). Graphs with fewer than ``k + 1``
  nodes are padded with zero columns. Each eigenvector gets a deterministic sign (largest
  absolute entry positive) so that the cached values are reproducible; the random sign flip
  of training is :func:`random_sign_flip`, applied per batch by the models in training only.
* :class:`AddRWSE` — random-walk structural encodings :math:`[(D^{-1}A)^t_{ii}]_{t=1..T}`: this is
  PyG's :class:`~torch_geometric.transforms.AddRandomWalkPE` (reused as is; it densifies graphs
  up to 2,000 nodes and takes sparse matrix powers above), with a parameterised ``repr``.

Caching: pass the transforms as ``pre_transform`` to :func:`graphattn.data.load_dataset`
(e.g. ``pre_transform=Compose([AddLapPE(8), AddRWSE(16)])``): PyG runs them once per graph when
the dataset is processed and stores the encodings in the processed file, whose name is keyed
by the transforms' ``repr`` (so a different ``k`` gives a different cache file).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import AddRandomWalkPE, BaseTransform

__all__ = ["laplacian_pe", "random_sign_flip", "AddLapPE", "AddRWSE"]


def _normalized_laplacian(edge_index: Tensor, num_nodes: int) -> sp.csr_matrix:
    """Sparse symmetric :math:`I - D^{-1/2} A D^{-1/2}` of the undirected, unweighted graph."""
    row, col = edge_index.cpu().numpy()
    keep = row != col
    row, col = row[keep], col[keep]
    adj = sp.coo_matrix((np.ones(row.size), (row, col)), shape=(num_nodes, num_nodes)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    d = sp.diags(inv_sqrt)
    return (sp.identity(num_nodes, format="csr") - d @ adj @ d).tocsr()


def laplacian_pe(edge_index: Tensor, num_nodes: int, k: int,
                 dense_threshold: int = 2000) -> Tuple[Tensor, Tensor]:
    r"""The ``k`` non-trivial Laplacian eigenvectors of a graph.

    Args:
        edge_index: ``[2, E]`` (made undirected, self-loops ignored).
        num_nodes: :math:`N`.
        k: number of eigenvectors.
        dense_threshold: above this many nodes, ``eigsh`` on the sparse Laplacian (Lanczos,
            smallest algebraic eigenvalues) replaces the dense ``eigh``.

    Returns:
        ``(pe [N, k] float32, eigenvalues [k] float32)``, zero-padded when :math:`N \le k`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be non-negative, got {num_nodes}")
    lap = _normalized_laplacian(edge_index, num_nodes)
    num = min(k + 1, num_nodes)
    if num_nodes == 0:
        vals, vecs = np.zeros(0), np.zeros((0, 0))
    elif num_nodes <= dense_threshold or num >= num_nodes - 1:
        vals, vecs = np.linalg.eigh(lap.toarray())
        vals, vecs = vals[:num], vecs[:, :num]
    else:
        rng = np.random.default_rng(0)                     # fixed start vector: reproducible cache
        vals, vecs = spla.eigsh(lap, k=num, which="SA", tol=1e-6, v0=rng.standard_normal(num_nodes),
                                maxiter=20 * num_nodes)
        order = np.argsort(vals)
        vals, vecs = vals[order], vecs[:, order]
    vals, vecs = vals[1:], vecs[:, 1:]                     # drop the trivial eigenvector
    if vecs.size:
        idx = np.abs(vecs).argmax(axis=0)
        vecs = vecs * np.sign(vecs[idx, np.arange(vecs.shape[1])])
    pe = torch.zeros(num_nodes, k)
    eig = torch.zeros(k)
    pe[:, :vecs.shape[1]] = torch.from_numpy(vecs).float()
    eig[:vals.shape[0]] = torch.from_numpy(vals).float()
    return pe, eig


def random_sign_flip(pe: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Multiplies every eigenvector column of ``pe`` ``[N, k]`` by a random sign (one draw per
    call, i.e. per batch, as in Dwivedi & Bresson). Use in training only."""
    sign = torch.randint(0, 2, (pe.size(-1),), generator=generator, device=pe.device).to(pe.dtype) * 2 - 1
    return pe * sign


class AddLapPE(BaseTransform):
    r"""Adds ``data[attr_name]`` ``[N, k]`` Laplacian eigenvector encodings (see :func:`laplacian_pe`)."""

    def __init__(self, k: int, attr_name: str = "lap_pe", dense_threshold: int = 2000):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.attr_name, self.dense_threshold = k, attr_name, dense_threshold

    def forward(self, data: Data) -> Data:
        data[self.attr_name] = laplacian_pe(data.edge_index, data.num_nodes, self.k, self.dense_threshold)[0]
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(k={self.k}, attr_name={self.attr_name!r})"


class AddRWSE(AddRandomWalkPE):
    r"""Adds ``data[attr_name]`` ``[N, walk_length]`` random-walk return probabilities
    (PyG's :class:`~torch_geometric.transforms.AddRandomWalkPE`, default name ``"rwse"``)."""

    def __init__(self, walk_length: int, attr_name: str = "rwse"):
        if walk_length < 1:
            raise ValueError(f"walk_length must be >= 1, got {walk_length}")
        super().__init__(walk_length, attr_name)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(walk_length={self.walk_length}, attr_name={self.attr_name!r})"
