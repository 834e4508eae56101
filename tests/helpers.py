"""Shared builders and checks of the tests: random graphs with awkward structure (and PyG data on them),
the dense attention oracle in float64, layer checks (per graph, permutation, gradients), and small
datasets in the official OGB / LRGB release layouts."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data


def random_graph(num_src: int, num_dst: int, num_edges: int, *, self_loops: bool = False, hub: bool = False,
                 isolated: int = 0, multigraph: bool = False, seed: Optional[int] = 0) -> Tensor:
    """A random ``edge_index`` ``[2, E]`` from ``num_src`` sources to ``num_dst`` destinations.

    By default duplicate-free, in shuffled order: ``hub`` gives destination 0 about half of all edges;
    ``self_loops`` adds ``i -> i`` for every ``i < min(num_src, num_dst)``. With ``multigraph``, exactly
    ``num_edges`` edges drawn independently (duplicates and self-loops as they fall). Either way the last
    ``isolated`` destinations get no edge. ``seed=None`` draws from the global generator (the tests'
    autouse seed), so that successive graphs differ.
    """
    g = None if seed is None else torch.Generator().manual_seed(seed)
    reachable = max(num_dst - isolated, 0)
    if multigraph:
        if hub or self_loops:
            raise ValueError("random_graph: hub and self_loops are options of duplicate-free graphs")
        if not num_edges:
            return torch.zeros(2, 0, dtype=torch.long)
        return torch.stack([torch.randint(num_src, (num_edges,), generator=g),
                            torch.randint(reachable, (num_edges,), generator=g)])
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


def random_data(num_nodes: int, num_edges: int, channels: int, edge_dim: Optional[int] = None,
                dtype: torch.dtype = torch.float32) -> Data:
    """A :class:`Data` on a :func:`random_graph` multigraph (global generator) with random node features
    ``x`` ``[N, channels]`` and, given ``edge_dim``, edge features ``edge_attr`` ``[E, edge_dim]``."""
    edge_index = random_graph(num_nodes, num_nodes, num_edges, multigraph=True, seed=None)
    data = Data(x=torch.randn(num_nodes, channels, dtype=dtype), edge_index=edge_index, num_nodes=num_nodes)
    if edge_dim is not None:
        data.edge_attr = torch.randn(num_edges, edge_dim, dtype=dtype)
    return data


def random_batch(sizes: Sequence[int], channels: int, edge_dim: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> Batch:
    """A batch of :func:`random_data` graphs of ``sizes`` nodes and three edges per node."""
    return Batch.from_data_list([random_data(n, 3 * n, channels, edge_dim, dtype) for n in sizes])


def labelled_paths(sizes: Sequence[int], features: int = 7, seed: int = 0) -> Batch:
    """A batch of graphs of ``sizes`` nodes (a path, a chord, both directions; a 1-node graph has no edge, a
    0-node graph nothing), one-hot float64 node labels of ``features`` kinds, class ``i % 2`` for graph ``i``."""
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for i, n in enumerate(sizes):
        pairs = [(a, a + 1) for a in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])
        edge_index = torch.tensor(pairs + [(b, a) for a, b in pairs], dtype=torch.long).t().reshape(2, -1)
        x = F.one_hot(torch.randint(0, features, (n,), generator=g), features).double()
        graphs.append(Data(x=x, edge_index=edge_index, y=torch.tensor([i % 2]), num_nodes=n))
    return Batch.from_data_list(graphs)


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
    """Every trainable parameter of ``module`` has a finite, nonzero gradient."""
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


def masked_weights(scores: Tensor, mask: Tensor, normalizer: str = "softmax") -> Tensor:
    r"""The dense attention oracle's weights, computed in float64: scores ``[..., n_dst, n_src]`` normalised
    over the keys ``mask`` (broadcastable, boolean) allows,

    .. math::
        a_{ij} = \frac{e^{s_{ij}}}{\sum_{j'} e^{s_{ij'}}} \text{ (softmax)}, \quad \sigma(s_{ij})
        \text{ (sigmoid)}, \quad \frac{\operatorname{softplus}(s_{ij})}{\sum_{j'} \operatorname{softplus}(s_{ij'})}
        \text{ (softplus)},

    sums over allowed :math:`j'`; zero where ``mask`` is false, so a row without an allowed key is zero
    (with finite gradients). Returned in the dtype of ``scores``."""
    s = scores.double()
    mask = mask.expand_as(s)
    if normalizer == "softmax":
        rows = mask.any(-1, keepdim=True)
        a = torch.softmax(torch.where(rows, s.masked_fill(~mask, float("-inf")), 0.0), -1) * mask
    elif normalizer == "sigmoid":
        a = torch.sigmoid(s) * mask
    elif normalizer == "softplus":
        u = F.softplus(s) * mask
        total = u.sum(-1, keepdim=True)
        a = u / torch.where(total > 0, total, torch.ones_like(total))
    else:
        raise ValueError(f"masked_weights: unknown normalizer {normalizer!r}")
    return a.to(scores.dtype)


def dense_attention(q: Tensor, k: Tensor, v: Tensor, edge_index: Tensor, bias: Optional[Tensor] = None,
                    scale: Optional[float] = None, normalizer: str = "softmax", edge_k: Optional[Tensor] = None,
                    edge_v: Optional[Tensor] = None) -> Tensor:
    r"""The dense attention oracle, in float64: the adjacency of ``edge_index`` (``src -> dst``, no duplicate
    edges) as a dense mask, scores
    :math:`s_{hij} = \text{scale}\,\langle q_{ih}, k_{jh} + e^k_{ijh} \rangle + b_{ijh}` on every pair,
    weights :func:`masked_weights` and :math:`o_{ih} = \sum_j a_{hij} (v_{jh} + e^v_{ijh})`.

    q ``[n_dst, H, D]``, k ``[n_src, H, D]``, v ``[n_src, H, Dv]``; per-edge ``bias`` ``[E, H]``,
    ``edge_k`` ``[E, H, D]``, ``edge_v`` ``[E, H, Dv]``; scale defaults to :math:`D^{-1/2}`. Rows without
    edges give zeros. Returns ``[n_dst, H, Dv]`` in the dtype of ``q``."""
    src, dst = edge_index
    n_dst, n_src, heads = q.size(0), k.size(0), q.size(1)
    mask = torch.zeros(n_dst, n_src, dtype=torch.bool, device=q.device)
    mask[dst, src] = True
    if int(mask.sum()) != edge_index.size(1):
        raise ValueError("dense_attention: edge_index has duplicate edges, which a dense mask cannot hold")

    def dense(per_edge: Tensor) -> Tensor:                   # [E, H, ...] -> [n_dst, n_src, H, ...], zero elsewhere
        out = per_edge.new_zeros(n_dst, n_src, *per_edge.shape[1:], dtype=torch.float64)
        return out.index_put((dst, src), per_edge.double())

    qd, kd, vd = q.double(), k.double(), v.double()
    scale = q.size(-1) ** -0.5 if scale is None else scale
    s = torch.einsum("ihd,jhd->hij", qd, kd)
    if edge_k is not None:
        s = s + torch.einsum("ihd,ijhd->hij", qd, dense(edge_k))
    s = scale * s
    if bias is not None:
        s = s + dense(bias).permute(2, 0, 1)
    a = masked_weights(s, mask, normalizer)
    out = torch.einsum("hij,jhd->ihd", a, vd)
    if edge_v is not None:
        out = out + torch.einsum("hij,ijhd->ihd", a, dense(edge_v))
    return out.to(q.dtype)


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
    features (``features >= classes``) with at least one 1 per row; every node joined to the next (both
    directions) plus a few random edges, a duplicate and a self loop. A node's label is one of its features
    with probability 0.6 (learnable, not perfectly: validation accuracy keeps moving, so early stopping ends a
    run). Returns ``root``."""
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


def tu_release(root: Path, prefix: str = "NCI1", sizes: Sequence[int] = (1, 2, 5, 7, 3, 9, 4, 6, 8, 5),
               num_labels: int = 5, edge_labels: bool = False, node_attributes: bool = False, seed: int = 0) -> Path:
    """A small TU dataset in the release layout ``<root>/<prefix>/raw/<prefix>_*.txt`` (what
    ``torch_geometric.datasets.TUDataset(root, prefix)`` reads): graph ``g`` has ``sizes[g]`` nodes on a path plus
    a random chord, both directions of every edge listed (``A`` as ``"i, j"``, 1-based), one self-loop in the
    last graph, node labels ``1..num_labels`` (every label used), graph labels ``0/1`` alternating; optionally
    edge labels and a continuous node attribute (as MUTAG and PROTEINS have). Returns ``root``."""
    g = torch.Generator().manual_seed(seed)
    raw = root / prefix / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    edges, indicator, offset = [], [], 0
    for graph, n in enumerate(sizes):
        pairs = [(i, i + 1) for i in range(n - 1)]
        if n > 3:
            a, b = sorted(torch.randperm(n, generator=g)[:2].tolist())
            if b - a > 1:
                pairs.append((a, b))
        edges += [(offset + i + 1, offset + j + 1) for i, j in pairs] + [(offset + j + 1, offset + i + 1)
                                                                        for i, j in pairs]
        indicator += [graph + 1] * n
        offset += n
    edges.append((offset, offset))
    labels = (torch.randint(1, num_labels + 1, (offset,), generator=g)).tolist()
    labels[0], labels[-1] = 1, num_labels
    (raw / f"{prefix}_A.txt").write_text("".join(f"{i}, {j}\n" for i, j in edges))
    (raw / f"{prefix}_graph_indicator.txt").write_text("".join(f"{i}\n" for i in indicator))
    (raw / f"{prefix}_node_labels.txt").write_text("".join(f"{v}\n" for v in labels))
    (raw / f"{prefix}_graph_labels.txt").write_text("".join(f"{i % 2}\n" for i in range(len(sizes))))
    if edge_labels:
        (raw / f"{prefix}_edge_labels.txt").write_text("".join(f"{i % 3}\n" for i in range(len(edges))))
    if node_attributes:
        (raw / f"{prefix}_node_attributes.txt").write_text("".join(f"{0.5 * i}\n" for i in range(offset)))
    return root
