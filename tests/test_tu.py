"""TU datasets (MUTAG, NCI1, PROTEINS): the raw-file loader against PyG's TUDataset, the per-run random split
of GraphTrans, one-line errors on damaged files, and the real datasets when GRAPHATTN_SHARED_DATA is set."""
import shutil

import pytest
import torch
from torch.utils.data import random_split

from graphattn.data import CorruptDataError, MissingDataError, load_dataset, random_split_indices
from graphattn.data.benchmarks import AccuracyEvaluator

from helpers import shared_data, tu_release

TU_ROOT = shared_data("tu")


def _pyg_tu(root, prefix, tmp_path):
    """PyG's TUDataset on a writable copy (it writes processed/)."""
    from torch_geometric.datasets import TUDataset

    copy = tmp_path / "pyg"
    shutil.copytree(root / prefix, copy / prefix)
    return TUDataset(str(copy), prefix)


@pytest.mark.parametrize("prefix, extra", [("NCI1", {}), ("MUTAG", {"edge_labels": True}),
                                           ("PROTEINS", {"node_attributes": True, "num_labels": 3})])
def test_tu_graphs_are_pyg_tudatasets_without_edge_features(tmp_path, prefix, extra):
    root = tu_release(tmp_path / "data", prefix, **extra)
    bench = load_dataset(prefix.lower(), str(root))
    reference = _pyg_tu(root, prefix, tmp_path)
    assert len(bench.dataset) == len(reference) == 10
    for ours, theirs in zip(bench.dataset, reference):
        assert torch.equal(ours.x, theirs.x) and torch.equal(ours.edge_index, theirs.edge_index)
        assert torch.equal(ours.y, theirs.y) and "edge_attr" not in ours
    width = extra.get("num_labels", 5)
    x = torch.cat([g.x for g in bench.dataset])
    assert x.shape[1] == width and torch.equal(x.sum(1), torch.ones(len(x)))          # one-hot labels only
    assert not any(bool((g.edge_index[0] == g.edge_index[1]).any()) for g in bench.dataset)  # self-loop removed
    assert (bench.eval_metric, bench.task_type, bench.num_tasks) == ("accuracy", "multiclass classification", 2)
    assert not (root / prefix / "processed").exists()                                  # nothing written


def test_split_of_a_run_is_graphtrans_random_split_with_its_own_seed(tmp_path):
    bench = load_dataset("nci1", str(tu_release(tmp_path, sizes=[3] * 57)))
    for run in (0, 1, 7):
        split = bench.for_run(run).split
        assert [len(split[s]) for s in ("train", "valid", "test")] == [45, 5, 7]      # int(0.8 n), int(0.1 n), rest
        assert torch.equal(torch.sort(torch.cat(list(split.values()))).values, torch.arange(57))
        parts = random_split(range(57), [45, 5, 7], generator=torch.Generator().manual_seed(12344 + run))
        assert all(split[s].tolist() == p.indices for s, p in zip(("train", "valid", "test"), parts))
        assert all(torch.equal(split[s], random_split_indices(57, run)[s]) for s in split)   # deterministic
    assert bench.for_run(0).split["train"].tolist() != bench.for_run(1).split["train"].tolist()
    assert torch.equal(bench.split["test"], bench.for_run(0).split["test"])
    torch.manual_seed(123)                                        # the global generator plays no part
    assert torch.equal(bench.for_run(1).split["valid"], random_split_indices(57, 1)["valid"])
    with pytest.raises(ValueError, match="run >= 0"):
        random_split_indices(57, -1)


def test_accuracy_evaluator_takes_the_first_largest_logit():
    result = AccuracyEvaluator().eval({"y_true": [[0], [1], [1]], "y_pred": [[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]]})
    assert result == {"accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="y_pred must have shape"):
        AccuracyEvaluator().eval({"y_true": [0, 1], "y_pred": [0.3, 0.2]})


def _set(line: int, value: str):
    return lambda lines: lines[:line - 1] + [value] + lines[line:]


@pytest.mark.parametrize("name, change, message", [
    ("A", lambda lines: ["1, 2", "2, x"], "NCI1_A.txt: line 2: expected integers"),
    ("A", _set(2, "2, 99"), "NCI1_A.txt: line 2: edge 2,99 names a node outside 1..50"),
    ("A", _set(2, "1, 4"), "NCI1_A.txt: line 2: edge 1,4 joins graphs 1 and 2"),
    ("graph_indicator", _set(5, "1"), "NCI1_graph_indicator.txt: line 5: graph 1 after graph 2"),
    ("graph_indicator", lambda lines: ["1" if v == "2" else v for v in lines], "NCI1_graph_indicator.txt: graph 2 "
                                                                                "has no node"),
    ("graph_indicator", _set(50, "11"), "NCI1_graph_indicator.txt: line 50: graph 11 is outside 1..10"),
    ("node_labels", lambda lines: lines[:2], "NCI1_node_labels.txt: 2 rows, but NCI1_graph_indicator.txt has 50"),
    ("graph_labels", lambda lines: [], "NCI1_graph_labels.txt: is empty"),
])
def test_damaged_tu_files_are_one_line_errors(tmp_path, name, change, message):
    root = tu_release(tmp_path, sizes=(3, 5, 4, 6, 5, 7, 4, 5, 6, 5))
    path = root / "NCI1" / "raw" / f"NCI1_{name}.txt"
    path.write_text("".join(f"{line}\n" for line in change(path.read_text().splitlines())))
    with pytest.raises(CorruptDataError) as error:
        load_dataset("nci1", str(root))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_tu_files_name_what_goes_where(tmp_path):
    root = tu_release(tmp_path)
    (root / "NCI1" / "raw" / "NCI1_node_labels.txt").unlink()
    with pytest.raises(MissingDataError, match="missing NCI1_node_labels.txt under .*NCI1/raw"):
        load_dataset("nci1", str(root))
    with pytest.raises(MissingDataError, match="pass root"):
        load_dataset("nci1")


@pytest.mark.skipif(TU_ROOT is None, reason="TU datasets not given (GRAPHATTN_SHARED_DATA)")
@pytest.mark.parametrize("name, graphs, labels", [("mutag", 188, 7), ("nci1", 4110, 37), ("proteins", 1113, 3)])
def test_real_tu_datasets(name, graphs, labels):
    bench = load_dataset(name, str(TU_ROOT))
    assert len(bench.dataset) == graphs and bench.dataset.num_features == labels and bench.num_tasks == 2
    split = bench.for_run(3).split
    assert [len(split[s]) for s in ("train", "valid", "test")] == [int(graphs * 0.8), int(graphs * 0.1),
                                                                   graphs - int(graphs * 0.8) - int(graphs * 0.1)]
