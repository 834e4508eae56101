r"""Linear (kernelised) attention within each graph of a batch: Performer and ELU+1 feature maps."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn.attention.performer import (PerformerProjection, generalized_kernel,
                                                     orthogonal_matrix)

from ._edge_ops import segment_sum
from .dropout import Dropout

__all__ = ["LinearGraphAttention"]

_NODE_CHUNK = 4096


def _segment_outer_sum(a: Tensor, b: Tensor, index: Tensor, num_segments: int) -> Tensor:
    r""":math:`S_g = \sum_{n:\,\text{index}_n = g} a_n b_n^{\top}` per head: ``[G, H, M, D]`` from
    ``a [N, H, M]`` and ``b [N, H, D]``, in node chunks (peak ``chunk x H x M x D``)."""
    out = a.new_zeros(num_segments, a.size(1), a.size(2), b.size(2))
    for start in range(0, a.size(0), _NODE_CHUNK):
        sl = slice(start, start + _NODE_CHUNK)
        out = out.index_add(0, index[sl], torch.einsum("nhm,nhd->nhmd", a[sl], b[sl]))
    return out


def _gather_contract(q: Tensor, kv: Tensor, index: Tensor) -> Tensor:
    r""":math:`o_n = q_n^{\top} S_{\text{index}_n}` per head: ``[N, H, D]`` from ``q [N, H, M]`` and
    ``kv [G, H, M, D]``, in node chunks; the gathered ``[chunk, H, M, D]`` block is recomputed in
    the backward pass (checkpointed) instead of being kept."""
    def block(qc: Tensor, idx: Tensor, kv_: Tensor) -> Tensor:
        return torch.einsum("nhm,nhmd->nhd", qc, kv_[idx])
    parts = [checkpoint(block, q[s:s + _NODE_CHUNK], index[s:s + _NODE_CHUNK], kv, use_reentrant=False)
             for s in range(0, q.size(0), _NODE_CHUNK)]
    return torch.cat(parts) if parts else q.new_zeros(0, q.size(1), kv.size(-1))


class LinearGraphAttention(torch.nn.Module):
    r"""Kernelised linear attention of every node over all nodes of its own graph
    (`Performer <https://arxiv.org/abs/2009.14794>`_ or `ELU+1 <https://arxiv.org/abs/2006.16236>`_):

    .. math::
        \mathbf{o}_i = \mathbf{W}_{o} \big\Vert_h
        \frac{\phi(\mathbf{q}_{i,h})^{\top} \sum_{j \in g(i)} \phi(\mathbf{k}_{j,h}) \mathbf{v}_{j,h}^{\top}}
             {\phi(\mathbf{q}_{i,h})^{\top} \sum_{j \in g(i)} \phi(\mathbf{k}_{j,h})}

    The per-graph sums are segment sums over the ``batch`` vector: no padding, no
    ``to_dense_batch``, cost :math:`O(N \cdot H \cdot M \cdot D)`. Parameter names (``q``, ``k``,
    ``v``, ``attn_out``, ``fast_attn.projection_matrix``) follow PyG's
    :class:`~torch_geometric.nn.attention.PerformerAttention`, whose random-feature map
    (``PerformerProjection``, ReLU kernel + 1e-3) is reused. Unlike PyG's padded version,
    nodes of other graphs (padding) never enter the normaliser.

    Args:
        channels: input/output channels.
        heads: number of heads.
        head_channels: channels per head (default ``channels // heads``).
        kernel: ``"performer"`` (orthogonal random features, ReLU kernel) or ``"elu"``
            (:math:`\phi(x) = \operatorname{elu}(x) + 1`).
        qkv_bias: biases in the q/k/v projections.
        attn_out_bias: bias in the output projection.
        dropout: dropout of the output (training only), as in PyG.
    """

    def __init__(self, channels: int, heads: int, head_channels: Optional[int] = None,
                 kernel: str = "performer", qkv_bias: bool = False, attn_out_bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        if kernel not in ("performer", "elu"):
            raise ValueError(f"kernel must be 'performer' or 'elu', got {kernel!r}")
        if head_channels is None:
            if channels % heads != 0:
                raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
            head_channels = channels // heads
        self.channels, self.heads, self.head_channels, self.kernel = channels, heads, head_channels, kernel
        inner = heads * head_channels
        self.fast_attn = PerformerProjection(head_channels) if kernel == "performer" else None
        self.q = torch.nn.Linear(channels, inner, bias=qkv_bias)
        self.k = torch.nn.Linear(channels, inner, bias=qkv_bias)
        self.v = torch.nn.Linear(channels, inner, bias=qkv_bias)
        self.attn_out = torch.nn.Linear(inner, channels, bias=attn_out_bias)
        self.dropout = Dropout(dropout)

    def reset_parameters(self) -> None:
        for lin in (self.q, self.k, self.v, self.attn_out):
            lin.reset_parameters()
        if self.fast_attn is not None:
            with torch.no_grad():
                self.fast_attn.projection_matrix.copy_(
                    orthogonal_matrix(self.fast_attn.num_rows, self.fast_attn.num_cols))

    _reset_parameters = reset_parameters

    def _features(self, x: Tensor) -> Tensor:
        if self.fast_attn is None:
            return F.elu(x) + 1.0
        mat = self.fast_attn.projection_matrix.to(x.dtype)
        return generalized_kernel(x.transpose(0, 1).unsqueeze(0), mat, self.fast_attn.kernel)[0].transpose(0, 1)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None, num_graphs: Optional[int] = None) -> Tensor:
        """``x`` ``[N, channels]``, ``batch`` ``[N]`` graph ids (``None``: one graph) -> ``[N, channels]``."""
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"x must have shape [N, {self.channels}], got {list(x.shape)}")
        n, h = x.size(0), self.heads
        if batch is None:
            batch = x.new_zeros(n, dtype=torch.long)
            num_graphs = 1
        elif num_graphs is None:
            num_graphs = int(batch.max()) + 1 if n else 0
        q = self._features(self.q(x).view(n, h, -1))                      # [N, H, M]
        k = self._features(self.k(x).view(n, h, -1))
        v = self.v(x).view(n, h, -1)                                      # [N, H, D]
        kv = _segment_outer_sum(k, v, batch, num_graphs)                  # [G, H, M, D]
        z = segment_sum(k, batch, num_graphs)[batch]                      # [N, H, M]
        num = _gather_contract(q, kv, batch)
        den = (q * z).sum(-1, keepdim=True)
        out = (num / den).reshape(n, -1)
        return self.dropout(self.attn_out(out))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(heads={self.heads}, head_channels={self.head_channels}, "
                f"kernel={self.kernel})")
