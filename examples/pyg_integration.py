"""graphattn's convs in PyG's tooling: explainers and ``to_hetero`` on real molecules (ogbg-molesol).

1. Homogeneous: a two-layer ``GraphAttnConv`` model with bond features (``edge_dim``) is trained to
   predict solubility; ``GNNExplainer`` (edge masks through PyG's explain mode; no node masks: atom
   features are categories) and
   ``AttentionExplainer`` (attention coefficients from the layers' message hooks) explain one test
   molecule; both print its most important bonds.
2. Heterogeneous: the same molecules as ``HeteroData`` with two atom types (carbon and hetero atoms)
   and the bond types between them; ``to_hetero`` turns a ``GraphAttnConv`` model into one layer per
   edge type, it is trained on the heterogeneous batches, and ``GNNExplainer`` and
   ``AttentionExplainer`` explain a molecule per node and edge type.

    python examples/pyg_integration.py            # about a minute on a CPU
    python examples/pyg_integration.py --epochs 2 # a quick run

The molecules are the copy of ogbg-molesol that ships with graphattn (OGB scaffold split, official
evaluator); ``--root`` reads another copy in OGB's layout.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.explain import AttentionExplainer, Explainer, GNNExplainer
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_mean_pool, to_hetero

from graphattn.data import load_dataset
from graphattn.models import AtomEncoder, BondEncoder
from graphattn.nn import GraphAttnConv

CARBON = 5                  # OGB's atom feature 0 is the atomic number - 1
ELEMENTS = {0: "H", 4: "B", 5: "C", 6: "N", 7: "O", 8: "F", 14: "P", 15: "S", 16: "Cl", 34: "Br", 52: "I"}


class MoleculeAttention(torch.nn.Module):
    """Atom/bond encoders -> 2 x GraphAttnConv(edge_dim) -> mean pool -> linear."""

    def __init__(self, channels: int = 32, heads: int = 4):
        super().__init__()
        self.atom, self.bond = AtomEncoder(channels), BondEncoder(channels)
        self.conv1 = GraphAttnConv(channels, channels // heads, heads=heads, edge_dim=channels)
        self.conv2 = GraphAttnConv(channels, channels // heads, heads=heads, edge_dim=channels)
        self.out = torch.nn.Linear(channels, 1)

    def forward(self, x, edge_index, edge_attr, batch):
        e = self.bond(edge_attr)
        h = self.conv1(self.atom(x), edge_index, e).relu()
        h = self.conv2(h, edge_index, e).relu()
        return self.out(global_mean_pool(h, batch)).view(-1)


class TypedAttention(torch.nn.Module):
    """The per-type model that ``to_hetero`` copies for every node and edge type (lazy input sizes)."""

    def __init__(self, channels: int = 32, heads: int = 4):
        super().__init__()
        self.conv1 = GraphAttnConv((-1, -1), channels // heads, heads=heads)
        self.conv2 = GraphAttnConv((-1, -1), channels // heads, heads=heads)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index).relu()


class HeteroMolecule(torch.nn.Module):
    def __init__(self, metadata, channels: int = 32):
        super().__init__()
        self.atom = AtomEncoder(channels)
        self.body = to_hetero(TypedAttention(channels), metadata, aggr="sum")
        self.out = torch.nn.Linear(channels, 1)

    def forward(self, x_dict, edge_index_dict, batch_dict):
        h = self.body({t: self.atom(x) for t, x in x_dict.items()}, edge_index_dict)
        num_graphs = int(max(b.max() for b in batch_dict.values())) + 1
        pooled = sum(global_mean_pool(h[t], batch_dict[t], num_graphs) for t in h)
        return self.out(pooled).view(-1)


def to_hetero_molecule(data) -> HeteroData:
    """Atoms split into ``carbon`` and ``hetero`` nodes; bonds typed by the types of their ends."""
    is_carbon = data.x[:, 0] == CARBON
    local = torch.empty(data.num_nodes, dtype=torch.long)
    out = HeteroData(y=data.y)
    for name, mask in (("carbon", is_carbon), ("hetero", ~is_carbon)):
        local[mask] = torch.arange(int(mask.sum()))
        out[name].x = data.x[mask]
    src, dst = data.edge_index
    for s_name, s_mask in (("carbon", is_carbon), ("hetero", ~is_carbon)):
        for d_name, d_mask in (("carbon", is_carbon), ("hetero", ~is_carbon)):
            keep = s_mask[src] & d_mask[dst]
            out[s_name, "bond", d_name].edge_index = torch.stack([local[src[keep]], local[dst[keep]]])
    return out


def train(model, loader, forward, epochs: int, lr: float = 3e-3) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        for batch in loader:
            optimizer.zero_grad()
            F.mse_loss(forward(model, batch), batch.y.view(-1)).backward()
            optimizer.step()
    return F.mse_loss(forward(model, next(iter(loader))), next(iter(loader)).y.view(-1)).item()


def bond_names(data, edge_ids) -> list[str]:
    atom = [ELEMENTS.get(int(a), f"#{int(a) + 1}") for a in data.x[:, 0]]
    return [f"{atom[int(data.edge_index[0, e])]}{int(data.edge_index[0, e])}-"
            f"{atom[int(data.edge_index[1, e])]}{int(data.edge_index[1, e])}" for e in edge_ids]


def explain_homogeneous(args, bench) -> None:
    torch.manual_seed(args.seed)
    loader = DataLoader(bench.subset("train"), batch_size=64, shuffle=True)
    model = MoleculeAttention()
    mse = train(model, loader, lambda m, b: m(b.x, b.edge_index, b.edge_attr, b.batch), args.epochs)
    print(f"homogeneous GraphAttnConv model: train MSE after {args.epochs} epochs {mse:.3f}")
    model.eval()
    mol = bench.subset("test")[args.molecule]
    batch = torch.zeros(mol.num_nodes, dtype=torch.long)
    config = dict(mode="regression", task_level="graph", return_type="raw")
    for name, algorithm in (("GNNExplainer", GNNExplainer(epochs=args.explainer_epochs)),
                            ("AttentionExplainer", AttentionExplainer())):
        explainer = Explainer(model, algorithm, explanation_type="model", edge_mask_type="object", model_config=config)
        explanation = explainer(mol.x, mol.edge_index, edge_attr=mol.edge_attr, batch=batch)
        top = explanation.edge_mask.topk(min(3, mol.num_edges)).indices.tolist()
        print(f"  {name}: most important bonds of test molecule {args.molecule}: {', '.join(bond_names(mol, top))}")


def explain_heterogeneous(args, bench) -> None:
    torch.manual_seed(args.seed)
    graphs = [to_hetero_molecule(d) for d in bench.subset("train")]
    loader = DataLoader(graphs, batch_size=64, shuffle=True)
    model = HeteroMolecule(graphs[0].metadata())

    def forward(m, b):
        return m(b.x_dict, b.edge_index_dict, {t: b[t].batch for t in b.node_types})

    mse = train(model, loader, forward, args.epochs)
    print(f"heterogeneous to_hetero(GraphAttnConv) model ({len(graphs[0].edge_types)} edge types): "
          f"train MSE after {args.epochs} epochs {mse:.3f}")
    model.eval()
    test = [to_hetero_molecule(d) for d in bench.subset("test")]
    # PyG's GNNExplainer needs every edge type to have an edge: the first such molecule from --molecule on
    index = next(i for i in range(args.molecule, len(test)) if all(test[i][t].num_edges for t in test[i].edge_types))
    mol = test[index]
    batch_dict = {t: torch.zeros(mol[t].num_nodes, dtype=torch.long) for t in mol.node_types}
    config = dict(mode="regression", task_level="graph", return_type="raw")
    for name, algorithm in (("GNNExplainer", GNNExplainer(epochs=args.explainer_epochs)),
                            ("AttentionExplainer", AttentionExplainer())):
        explainer = Explainer(model, algorithm, explanation_type="model", edge_mask_type="object", model_config=config)
        explanation = explainer(mol.x_dict, mol.edge_index_dict, batch_dict=batch_dict)
        weights = {f"{s}->{d}": round(float(explanation[(s, r, d)].edge_mask.sum()), 3)
                   for s, r, d in mol.edge_types if mol[s, r, d].num_edges}
        print(f"  {name}: test molecule {index}, total edge importance per bond type: {weights}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None, help="folder with ogbg_molesol/ (default: the embedded copy)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--explainer-epochs", type=int, default=100)
    p.add_argument("--molecule", type=int, default=0, help="index of the test molecule to explain")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bench = load_dataset("ogbg-molesol", args.root)
    explain_homogeneous(args, bench)
    explain_heterogeneous(args, bench)


if __name__ == "__main__":
    import sys

    from graphattn.cli import one_line_errors

    with one_line_errors(f"python {sys.argv[0]}"):
        main()
