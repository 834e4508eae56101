r"""One description of a fused attention call: typed records, flattened only at the ``torch.library`` boundary.

A kernel of the fused attention (the reference, the C kernels, the Triton kernels) receives one
:class:`KernelCall`:

* :class:`Inputs` — the tensors: ``q``, ``k``, ``v`` and the optional per-edge inputs (``bias``
  ``[E, H]``, ``edge_k`` ``[E, H, D]``, ``edge_v`` ``[E, H, Dv]``, in the user's edge order), the GATv2
  attention vector ``att`` ``[H, D]`` and the dropout ``seed``;
* :class:`GraphIndex` — the index tensors of the CSR and its transpose;
* :class:`Options` — the scalars: score function, normaliser, scale, LeakyReLU slope, dropout threshold.

The score functions (per head :math:`h`, edge :math:`c = (j \to i)`):

* ``"dot"``: :math:`s_c = \text{scale}\,\langle q_i, k_j + e^k_c\rangle + b_c`;
* ``"gat"`` (GAT's additive score; ``q`` ``[N_dst, H, 1]``, ``k`` ``[N_src, H, 1]``):
  :math:`s_c = \operatorname{LeakyReLU}(q_i + k_j + b_c)`;
* ``"gatv2"``: :math:`s_c = \sum_d \text{att}_{hd}\, \operatorname{LeakyReLU}(q_i + k_j + e^k_c)_d + b_c`.

The custom ops of :mod:`sparse_kernels.ops` take these fields flat, in the order of
:data:`FLAT_FIELDS`; :func:`op_schema` writes their schema from the records, :meth:`KernelCall.flat` and
:meth:`KernelCall.from_flat` convert, so that adding a per-edge input or an option is one field here plus
its use in the kernels. The C kernels read the same call as one struct (:mod:`sparse_kernels.cpu`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["SCORES", "Inputs", "GraphIndex", "Options", "KernelCall", "Grads", "Features", "FLAT_FIELDS",
           "op_schema"]

#: The score functions of the engine.
SCORES = ("dot", "gat", "gatv2")


@dataclass(frozen=True)
class Features:
    """What a kernel must support for one op call (the dispatcher's key)."""

    dtype: torch.dtype
    normalizer: str = "softmax"
    edge_vectors: bool = False      # edge_k / edge_v present
    dropout: bool = False
    bias: bool = False
    score: str = "dot"


@dataclass(frozen=True)
class Inputs:
    """The tensors of an attention call (contiguous; per-edge tensors in the user's edge order)."""

    q: Tensor
    k: Tensor
    v: Tensor
    bias: Optional[Tensor] = None
    edge_k: Optional[Tensor] = None
    edge_v: Optional[Tensor] = None
    att: Optional[Tensor] = None
    seed: Optional[Tensor] = None


@dataclass(frozen=True)
class GraphIndex:
    """Index tensors of a CSR by destination and its transpose (see :class:`~sparse_kernels.csr.CSR`):
    ``rowptr`` ``[N_dst + 1]``, ``col``/``row`` ``[E]``, ``eid`` ``[E]`` (CSR position -> user edge id,
    ``None`` for the identity), ``colptr`` ``[N_src + 1]``, ``row_t``/``perm_t`` ``[E]``."""

    rowptr: Tensor
    col: Tensor
    row: Tensor
    eid: Optional[Tensor]
    colptr: Tensor
    row_t: Tensor
    perm_t: Tensor

    @classmethod
    def of(cls, csr: Any) -> "GraphIndex":
        """The index of a :class:`~sparse_kernels.csr.CSR` (builds its cached transpose)."""
        csc = csr.transpose()
        return cls(csr.rowptr, csr.col, csr.row, csr.eid, csc.colptr, csc.row, csc.perm)


@dataclass(frozen=True)
class Options:
    """The scalars of an attention call. ``p_threshold`` and ``keep_scale`` are the dropout's integer
    threshold and :math:`1/(1-p)` (:mod:`sparse_kernels.dropout`; threshold 0: no dropout);
    ``shared_edge``: ``edge_v`` is ``edge_k`` (one tensor passed once, one summed gradient)."""

    scale: float = 1.0
    normalizer: str = "softmax"
    score: str = "dot"
    negative_slope: float = 0.2
    p_threshold: int = 0
    keep_scale: float = 1.0
    shared_edge: bool = False


@dataclass(frozen=True)
class KernelCall:
    """One fused attention call as every kernel receives it."""

    inputs: Inputs
    graph: GraphIndex
    options: Options

    @property
    def edge_v(self) -> Optional[Tensor]:
        """The per-edge value term (``edge_k`` itself when shared)."""
        return self.inputs.edge_k if self.options.shared_edge else self.inputs.edge_v

    @property
    def dropout_active(self) -> bool:
        return self.inputs.seed is not None and self.options.p_threshold > 0

    @property
    def features(self) -> Features:
        i, o = self.inputs, self.options
        return Features(i.q.dtype, o.normalizer, i.edge_k is not None or i.edge_v is not None,
                        self.dropout_active, i.bias is not None, o.score)

    def flat(self) -> tuple:
        """The fields in :data:`FLAT_FIELDS` order (the custom ops' arguments)."""
        return tuple(getattr(record, f.name) for record in (self.inputs, self.graph, self.options)
                     for f in dataclasses.fields(record))

    @classmethod
    def from_flat(cls, args: Sequence) -> "KernelCall":
        """The inverse of :meth:`flat`."""
        records, start = [], 0
        for record_type in (Inputs, GraphIndex, Options):
            n = len(dataclasses.fields(record_type))
            records.append(record_type(*args[start:start + n]))
            start += n
        return cls(*records)


@dataclass(frozen=True)
class Grads:
    """Gradients of a fused attention call: ``None`` for absent inputs (and ``dedge_v`` when ``edge_k``
    is shared: its ``dedge_k`` holds both uses)."""

    dq: Tensor
    dk: Tensor
    dv: Tensor
    dbias: Optional[Tensor] = None
    dedge_k: Optional[Tensor] = None
    dedge_v: Optional[Tensor] = None
    datt: Optional[Tensor] = None

    def flat(self, like: Tensor) -> tuple[Tensor, ...]:
        """All seven, an empty tensor for each absent one (a custom op returns tensors only)."""
        return tuple(like.new_empty(0) if g is None else g for g in dataclasses.astuple(self))

    @classmethod
    def from_flat(cls, grads: Sequence[Tensor], call: KernelCall) -> "Grads":
        """The inverse of :meth:`flat`: the gradients of the inputs the call has."""
        dq, dk, dv, dbias, dek, dev, datt = grads
        i = call.inputs
        return cls(dq, dk, dv, dbias if i.bias is not None else None, dek if i.edge_k is not None else None,
                   dev if call.edge_v is not None and not call.options.shared_edge else None,
                   datt if i.att is not None else None)


def _schema_type(field: dataclasses.Field) -> str:
    names = {"Tensor": "Tensor", "Optional[Tensor]": "Tensor?", "float": "float", "str": "str", "int": "int",
             "bool": "bool"}
    return names[str(field.type)]


#: The flat argument names of the fused ops, in order.
FLAT_FIELDS: tuple[str, ...] = tuple(f.name for record in (Inputs, GraphIndex, Options)
                                     for f in dataclasses.fields(record))


def op_schema(prefix: str = "", returns: str = "(Tensor, Tensor)") -> str:
    """The ``torch.library`` schema of a fused op taking ``prefix`` arguments, then the call's fields."""
    fields = [f"{_schema_type(f)} {f.name}" for record in (Inputs, GraphIndex, Options)
              for f in dataclasses.fields(record)]
    return f"({', '.join(([prefix] if prefix else []) + fields)}) -> {returns}"
