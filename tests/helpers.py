"""Shared builders for the tests: random graphs with awkward structure, dense references, and small
datasets in the official OGB / LRGB release layouts."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def random_graph(num_src: int, num_dst: int, num_edges: int, *, self_loops: bool = False,
                 hub: bool = False, isolated: int = 0, seed: int = 0) -> Tensor:
    """A duplicate-free random ``edge_index`` ``[2, E]`` in shuffled order.

    ``hub`` gives destination 0 about half of all edges; the last ``isolated`` destinations
    get no edge; ``self_loops`` adds ``i -> i`` for every ``i < min(num_src, num_dst)``.
    """
    g = torch.Generator().manual_seed(seed)
    reachable = max(num_dst - isolated, 0)
    pairs = set()
    if reachable:
        while len(pairs) < num_edges:
            dst = 0 if hub and torch.rand((), generator=g) < 0.5 else int(torch.randint(reachable, (), generator=g))
            pairs.add((int(torch.randint(num_src, (), generator=g)), dst))
            if len(pairs) >= reachable * num_src:
                break
    if self_loops:
        pairs |= {(i, i) for i in range(min(num_src, reachable))}
    edges = torch.tensor(sorted(pairs), dtype=torch.long).reshape(-1, 2).t()
    return edges[:, torch.randperm(edges.size(1), generator=g)]


def dense_attention(q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor, bias: Tensor | None = None,
                    scale: float | None = None, normalizer: str = "softmax") -> Tensor:
    """Dense masked attention with the adjacency as mask; rows without edges give zeros."""
    n_dst, n_src, heads = q.size(0), k.size(0), q.size(1)
    mask = torch.zeros(n_dst, n_src, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True
    dense_bias = torch.zeros(heads, n_dst, n_src, dtype=q.dtype)
    if bias is not None:
        dense_bias = dense_bias.index_put((torch.arange(heads)[:, None], edge_index[1][None], edge_index[0][None]),
                                          bias.t())
    scale = q.size(-1) ** -0.5 if scale is None else scale
    qh, kh, vh = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if normalizer == "softmax":
        rows = mask.any(1)  # SDPA is NaN on fully masked rows: run it on the others only
        attn_mask = dense_bias[:, rows].masked_fill(~mask[rows], float("-inf"))
        part = F.scaled_dot_product_attention(qh[:, rows], kh, vh, attn_mask=attn_mask, scale=scale)
        out = qh.new_zeros(heads, n_dst, v.size(-1)).index_put((torch.arange(heads)[:, None],
                                                                 rows.nonzero().view(1, -1)), part)
        return out.transpose(0, 1)
    s = scale * qh @ kh.transpose(1, 2) + dense_bias
    if normalizer == "sigmoid":
        a = torch.sigmoid(s) * mask
    else:
        u = F.softplus(s) * mask
        total = u.sum(-1, keepdim=True)
        a = u / torch.where(total > 0, total, torch.ones_like(total))
    return (a @ vh).transpose(0, 1)


def shared_data(*parts: str):
    """A real dataset outside the repository, only when ``GRAPHATTN_SHARED_DATA`` names its folder
    (e.g. ``GRAPHATTN_SHARED_DATA=../shared/data``); ``None`` otherwise, so that by default no test
    reads anything outside the repository."""
    import os
    from pathlib import Path

    root = os.environ.get("GRAPHATTN_SHARED_DATA")
    path = Path(root, *parts) if root else None
    return path if path is not None and path.exists() else None


def gzip_lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def write_gzip_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))


def ogb_release(root: Path, name: str = "ogbg_molesol", split: Optional[Mapping[str, range]] = None,
                labels: Optional[Sequence[str]] = None) -> Path:
    """``root/<name>/`` in OGB's release layout (raw count, feature and label files, scaffold split),
    holding the first graphs of the embedded ogbg-molesol; ``labels`` replaces its labels (e.g. 0/1 for a
    classification dataset such as ``ogbg_molhiv``). Returns ``root``."""
    from graphattn.data import embedded_root

    split = split or {"train": range(0, 8), "valid": range(8, 10), "test": range(10, 12)}
    graphs = max(max(index) for index in split.values()) + 1
    source = Path(embedded_root()) / "ogbg_molesol" / "raw"
    folder = root / name
    (folder / "raw").mkdir(parents=True)
    nodes = [int(n) for n in gzip_lines(source / "num-node-list.csv.gz")[:graphs]]
    edges = [int(n) for n in gzip_lines(source / "num-edge-list.csv.gz")[:graphs]]
    rows = {"num-node-list": graphs, "num-edge-list": graphs, "graph-label": graphs,
            "node-feat": sum(nodes), "edge": sum(edges), "edge-feat": sum(edges)}
    for file, count in rows.items():
        write_gzip_lines(folder / "raw" / f"{file}.csv.gz", gzip_lines(source / f"{file}.csv.gz")[:count])
    if labels is not None:
        write_gzip_lines(folder / "raw" / "graph-label.csv.gz", labels)
    (folder / "split" / "scaffold").mkdir(parents=True)
    for part, index in split.items():
        write_gzip_lines(folder / "split" / "scaffold" / f"{part}.csv.gz", [str(i) for i in index])
    (folder / "RELEASE_v1.txt").write_text(f"{name} fixture\n")
    return root


def peptide_lines(smiles: Sequence[str]) -> list[str]:
    """The lines of an LRGB ``peptide_multi_class_dataset.csv``: molecule ``i`` gets the 10 binary labels of
    the bits of ``i * 37 + 5``."""
    rows = [f'{i},{s},X,"{[(i * 37 + 5) >> bit & 1 for bit in range(10)]}",id{i}' for i, s in enumerate(smiles)]
    return [",smiles,peptide_seq,labels,identifier"] + rows


def peptides_release(folder: Path, smiles: Sequence[str], split: Mapping[str, Sequence[int]]) -> Path:
    """An LRGB peptides-func release in ``folder``: ``raw/peptide_multi_class_dataset.csv.gz`` and the split
    pickle (LRGB's keys ``train`` / ``val`` / ``test``). Returns ``folder``."""
    (folder / "raw").mkdir(parents=True)
    write_gzip_lines(folder / "raw" / "peptide_multi_class_dataset.csv.gz", peptide_lines(smiles))
    with open(folder / "splits_random_stratified_peptide.pickle", "wb") as f:
        pickle.dump({"train": list(split["train"]), "val": list(split["valid"]), "test": list(split["test"])}, f)
    return folder


def planetoid_release(root: Path, name: str = "cora", train: int = 4, labelled: int = 510, test: int = 6,
                      features: int = 5, classes: int = 3, gap: Optional[int] = None, seed: int = 0) -> Path:
    """``root/<Name>/raw/ind.<name>.*`` in the Planetoid release's format (pickled SciPy / NumPy matrices,
    a dict of neighbour lists, ``test.index`` one node per line in shuffled order): ``train`` training nodes,
    ``labelled`` rows in ``allx`` (at least ``train`` + 500: the public split's validation nodes follow the
    training nodes), ``test`` test nodes after them; ``gap`` leaves that test-range node out of
    ``test.index`` (an isolated node, as in CiteSeer: ``name`` must then be ``"citeseer"``). Binary
    features (``features >= classes``) with at least one 1 per row; every node joined to the next (both directions) plus a few
    random edges, a duplicate and a self loop. A node's label is one of its features with probability 0.6
    (learnable, not perfectly: validation accuracy keeps moving, so early stopping ends a run). Returns
    ``root``."""
    import numpy as np
    import scipy.sparse as sp

    from graphattn.data import PLANETOID

    rng = np.random.default_rng(seed)
    nodes = labelled + test + (gap is not None)
    label = rng.integers(0, classes, nodes)
    x = (rng.random((nodes, features)) < 0.3).astype(np.float32)
    x[np.arange(nodes), np.where(rng.random(nodes) < 0.6, label, rng.integers(0, features, nodes))] = 1.0
    y = np.eye(classes, dtype=np.int64)[label]
    test_nodes = [i for i in range(labelled, nodes) if i != labelled + gap] if gap is not None else \
        list(range(labelled, nodes))
    order = rng.permutation(len(test_nodes))
    test_index = [test_nodes[i] for i in order]
    graph = {i: [] for i in range(nodes)}
    for i in range(nodes - 1):
        if gap is None or labelled + gap not in (i, i + 1):
            graph[i].append(i + 1)
            graph[i + 1].append(i)
    for a, b in rng.integers(0, labelled, (20, 2)):
        graph[int(a)].append(int(b))
        graph[int(b)].append(int(a))
    graph[0] += [1, 0]                                          # a duplicate edge and a self loop
    objects = {"x": sp.csr_matrix(x[:train]), "y": y[:train], "allx": sp.csr_matrix(x[:labelled]),
               "ally": y[:labelled], "tx": sp.csr_matrix(x[test_index]), "ty": y[test_index], "graph": graph}
    folder = root / PLANETOID[name] / "raw"
    folder.mkdir(parents=True)
    for suffix, value in objects.items():
        with open(folder / f"ind.{name}.{suffix}", "wb") as f:
            pickle.dump(value, f)
    (folder / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in test_index))
    return root
