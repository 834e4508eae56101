r"""Input encoders: OGB atom/bond embeddings (with room for extra categories) and the
positional-encoding embeddings shared by the ready-made models."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from ..data.positional import random_sign_flip

__all__ = ["AtomEncoder", "BondEncoder", "CategoricalEncoder", "InputEncoder", "EdgeInputEncoder"]


class CategoricalEncoder(torch.nn.Module):
    r"""Sum of one embedding per integer feature column: :math:`\mathbf{h} = \sum_c \mathbf{E}_c[x_c]`
    (OGB's ``AtomEncoder``/``BondEncoder``, Xavier-initialised), with ``extra_categories`` more rows
    per column (e.g. the LRGB-style virtual node's own category, see
    :class:`graphattn.data.virtual_node.AddVirtualNode`)."""

    def __init__(self, emb_dim: int, dims: Sequence[int], extra_categories: int = 0):
        super().__init__()
        self.dims = [int(d) + extra_categories for d in dims]
        self.embeddings = torch.nn.ModuleList([torch.nn.Embedding(d, emb_dim) for d in self.dims])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb in self.embeddings:
            torch.nn.init.xavier_uniform_(emb.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype.is_floating_point or x.dim() != 2 or x.size(1) != len(self.embeddings):
            raise ValueError(f"expected integer categories of shape [N, {len(self.embeddings)}], "
                             f"got {x.dtype} {list(x.shape)}")
        out = self.embeddings[0](x[:, 0])
        for c in range(1, x.size(1)):
            out = out + self.embeddings[c](x[:, c])
        return out


class AtomEncoder(CategoricalEncoder):
    """OGB atom features ``[N, 9]`` -> ``[N, emb_dim]``."""

    def __init__(self, emb_dim: int, extra_categories: int = 0):
        from ogb.utils.features import get_atom_feature_dims
        super().__init__(emb_dim, get_atom_feature_dims(), extra_categories)


class BondEncoder(CategoricalEncoder):
    """OGB bond features ``[E, 3]`` -> ``[E, emb_dim]``."""

    def __init__(self, emb_dim: int, extra_categories: int = 0):
        from ogb.utils.features import get_bond_feature_dims
        super().__init__(emb_dim, get_bond_feature_dims(), extra_categories)


def _feature_encoder(kind: Union[str, int], channels: int, extra_categories: int, atom: bool) -> torch.nn.Module:
    if kind == "ogb":
        return AtomEncoder(channels, extra_categories) if atom else BondEncoder(channels, extra_categories)
    if isinstance(kind, int) and kind > 0:
        return torch.nn.Linear(kind, channels)
    raise ValueError(f"encoder must be 'ogb' or a positive input width, got {kind!r}")


class InputEncoder(torch.nn.Module):
    r"""Node input embedding :math:`\mathbf{h}_i = \operatorname{Enc}(\mathbf{x}_i)
    + \mathbf{W}_{lap}\, \mathbf{p}^{lap}_i + \mathbf{W}_{rw}\, \mathbf{p}^{rw}_i`, or with
    ``rwse_concat_dim`` :math:`d > 0` GraphGPS's ``Atom+RWSE`` encoder
    :math:`\mathbf{h}_i = [\operatorname{Enc}(\mathbf{x}_i) \,\|\, \mathbf{W}_{rw}\operatorname{BN}
    (\mathbf{p}^{rw}_i)] + \mathbf{W}_{lap}\, \mathbf{p}^{lap}_i` (an embedding of width :math:`C - d`
    next to the batch-normalised random-walk probabilities projected to :math:`d`).

    Args:
        channels: output width :math:`C`.
        node_encoder: ``"ogb"`` (atom categories) or the float input width.
        lap_pe_dim: number of Laplacian eigenvectors (0: none); in training every batch
            gets a random sign per eigenvector (``random_sign_flip``).
        rwse_dim: random-walk steps (0: none).
        extra_categories: extra rows per atom column (virtual-node transform).
        rwse_concat_dim: :math:`d` (0: the RWSE is projected to :math:`C` and added).
    """

    def __init__(self, channels: int, node_encoder: Union[str, int] = "ogb", lap_pe_dim: int = 0,
                 rwse_dim: int = 0, extra_categories: int = 0, rwse_concat_dim: int = 0):
        super().__init__()
        if rwse_concat_dim and not (rwse_dim > 0 and 0 < rwse_concat_dim < channels):
            raise ValueError(f"rwse_concat_dim needs rwse_dim > 0 and 0 < rwse_concat_dim < channels, got "
                             f"rwse_concat_dim={rwse_concat_dim}, rwse_dim={rwse_dim}, channels={channels}")
        self.node = _feature_encoder(node_encoder, channels - rwse_concat_dim, extra_categories, atom=True)
        self.lap = torch.nn.Linear(lap_pe_dim, channels) if lap_pe_dim > 0 else None
        self.rwse = torch.nn.Linear(rwse_dim, rwse_concat_dim or channels) if rwse_dim > 0 else None
        self.rwse_norm = torch.nn.BatchNorm1d(rwse_dim) if rwse_concat_dim else None

    def forward(self, x: Tensor, lap_pe: Optional[Tensor] = None, rwse: Optional[Tensor] = None) -> Tensor:
        h = self.node(x)
        if self.rwse is not None:
            if rwse is None:
                raise ValueError("rwse is required (the model was built with rwse_dim > 0)")
            if self.rwse_norm is not None:
                h = torch.cat([h, self.rwse(self.rwse_norm(rwse))], dim=-1)
            else:
                h = h + self.rwse(rwse)
        if self.lap is not None:
            if lap_pe is None:
                raise ValueError("lap_pe is required (the model was built with lap_pe_dim > 0)")
            h = h + self.lap(random_sign_flip(lap_pe) if self.training else lap_pe)
        return h


class EdgeInputEncoder(torch.nn.Module):
    """Edge input embedding: ``"ogb"`` bond categories or a float input width -> ``channels``."""

    def __init__(self, channels: int, edge_encoder: Union[str, int] = "ogb", extra_categories: int = 0):
        super().__init__()
        self.edge = _feature_encoder(edge_encoder, channels, extra_categories, atom=False)

    def forward(self, edge_attr: Optional[Tensor]) -> Tensor:
        if edge_attr is None:
            raise ValueError("edge_attr is required (the model has an edge encoder)")
        return self.edge(edge_attr)
