"""Planetoid loader: the public split and node order on a small release-layout fixture (and on the real Cora
and CiteSeer when GRAPHATTN_SHARED_DATA is set), CiteSeer's isolated test-range nodes, row normalisation,
and one-line errors naming the file at fault."""
import pickle

import pytest
import torch
from torch_geometric.utils import contains_self_loops, is_undirected

from graphattn.data import CorruptDataError, MissingDataError, load_planetoid, row_normalize

from helpers import planetoid_release, shared_data

PLANETOID = shared_data("planetoid")


def _raw(root, name, suffix):
    return root / {"cora": "Cora", "citeseer": "CiteSeer"}[name] / "raw" / f"ind.{name}.{suffix}"


def _pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def test_public_split_and_node_order(tmp_path):
    planetoid_release(tmp_path, train=4, labelled=510, test=6)
    bench = load_planetoid("cora", str(tmp_path))
    data = bench.data
    assert data.num_nodes == 516 and bench.num_features == 5 and bench.num_classes == 3
    assert data.train_mask.nonzero().view(-1).tolist() == [0, 1, 2, 3]
    assert data.val_mask.nonzero().view(-1).tolist() == list(range(4, 504))
    assert data.test_mask.nonzero().view(-1).tolist() == list(range(510, 516))
    # test rows are listed in test.index's (shuffled) order and put back in node order
    test_index = [int(line) for line in _raw(tmp_path, "cora", "test.index").read_text().split()]
    tx, ty = _pickle(_raw(tmp_path, "cora", "tx")).toarray(), _pickle(_raw(tmp_path, "cora", "ty"))
    assert test_index != sorted(test_index)
    for row, node in enumerate(test_index):
        assert data.x[node].tolist() == tx[row].tolist() and int(data.y[node]) == int(ty[row].argmax())
    allx = _pickle(_raw(tmp_path, "cora", "allx")).toarray()
    assert torch.equal(data.x[:510], torch.from_numpy(allx))
    assert is_undirected(data.edge_index) and not contains_self_loops(data.edge_index)
    assert data.edge_index.t().unique(dim=0).size(0) == data.num_edges          # the duplicate is gone


def test_citeseer_isolated_test_nodes_are_zero_rows_outside_every_mask(tmp_path):
    planetoid_release(tmp_path, name="citeseer", test=6, gap=2)
    data = load_planetoid("citeseer", str(tmp_path)).data
    isolated = 510 + 2
    assert data.num_nodes == 517 and int(data.test_mask.sum()) == 6
    assert not (data.train_mask | data.val_mask | data.test_mask)[isolated]
    assert data.x[isolated].abs().sum() == 0
    assert not (data.edge_index == isolated).any()


def test_row_normalisation(tmp_path):
    planetoid_release(tmp_path, name="citeseer", gap=1)
    raw, normalised = (load_planetoid("citeseer", str(tmp_path), normalize_features=f).data.x for f in (False, True))
    sums = normalised.sum(1)
    zero = raw.sum(1) == 0
    assert zero.sum() == 1 and (sums[zero] == 0).all()
    torch.testing.assert_close(sums[~zero], torch.ones(int((~zero).sum())))
    torch.testing.assert_close(normalised, raw / raw.sum(1, keepdim=True).clamp(min=1))
    assert torch.equal(row_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _replace(suffix_value):
    def damage(path):
        with open(path, "wb") as f:
            pickle.dump(suffix_value, f)
    return damage


@pytest.mark.parametrize("suffix, damage, problem", [
    ("allx", _truncate, "not a complete pickle"),
    ("graph", lambda p: p.write_bytes(b"garbage"), "not a complete pickle"),
    ("ty", lambda p: _replace(_pickle(p)[:-1])(p), "rows, but ind.cora.tx has 6"),
    ("tx", lambda p: _replace(_pickle(p)[:, :4])(p), "4 columns, but ind.cora.x has 5"),
    ("graph", lambda p: _replace({**_pickle(p), 3: [9999]})(p), "not a node id in [0, 516)"),
    ("graph", _replace([1, 2]), "expected a dict"),
    ("y", _replace("labels"), "expected a 2-D matrix"),
    ("test.index", lambda p: p.write_text("510\n511\nx\n"), "expected integers"),
    ("test.index", lambda p: p.write_text("".join(f"{i}\n" for i in [510, 511, 512, 513, 514, 514])),
     "listed twice"),
    ("test.index", lambda p: p.write_text("".join(f"{i}\n" for i in [3, 511, 512, 513, 514, 515])),
     "among the 510 nodes"),
    ("test.index", lambda p: p.write_text("".join(f"{i}\n" for i in [510, 511, 512, 513, 514, 517])),
     "do not cover"),
])
def test_corrupt_files_are_one_line_naming_the_file(tmp_path, suffix, damage, problem):
    planetoid_release(tmp_path)
    path = _raw(tmp_path, "cora", suffix)
    damage(path)
    with pytest.raises(CorruptDataError) as info:
        load_planetoid("cora", str(tmp_path))
    message = str(info.value)
    assert info.value.path == str(path) and message.startswith(f"{path}: ")
    assert problem in message and "\n" not in message, message


def test_missing_files_and_names(tmp_path):
    planetoid_release(tmp_path)
    _raw(tmp_path, "cora", "ally").unlink()
    with pytest.raises(MissingDataError, match=r"missing ind\.cora\.ally under .*Cora/raw"):
        load_planetoid("cora", str(tmp_path))
    with pytest.raises(MissingDataError, match="ind.citeseer.x"):
        load_planetoid("citeseer", str(tmp_path))
    with pytest.raises(ValueError, match="unknown Planetoid dataset 'pubmed'"):
        load_planetoid("pubmed", str(tmp_path))


@pytest.mark.skipif(PLANETOID is None, reason="Planetoid data not given (GRAPHATTN_SHARED_DATA)")
@pytest.mark.parametrize("name, counts", [("cora", (2708, 10556, 1433, 7, 140, 0)),
                                          ("citeseer", (3327, 9104, 3703, 6, 120, 15))])
def test_real_planetoid_counts(name, counts):
    bench = load_planetoid(name, str(PLANETOID), normalize_features=True)
    data = bench.data
    nodes, edges, features, classes, train, empty = counts
    assert (data.num_nodes, data.num_edges, bench.num_features, bench.num_classes) == (nodes, edges, features, classes)
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [train, 500, 1000]
    assert int((data.x.sum(1) == 0).sum()) == empty and is_undirected(data.edge_index)
    assert not any(p.name == "processed" for p in PLANETOID.rglob("*"))          # read-only data stays untouched
