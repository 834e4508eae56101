"""Dataset loaders: the embedded ogbg-molesol, OGB layout checks, LRGB peptides."""

import pytest
import torch

from graphattn.data import MissingDataError, load_dataset

from helpers import peptides_release, shared_data

PEPTIDES = shared_data("lrgb-peptides-func")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRAPHATTN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_embedded_molesol_matches_official_layout():
    bench = load_dataset("ogbg-molesol")
    assert len(bench.dataset) == 1128
    assert {k: len(v) for k, v in bench.split.items()} == {"train": 902, "valid": 113, "test": 113}
    g = bench.dataset[0]
    assert g.x.dtype == torch.long and g.x.size(1) == 9 and g.edge_attr.size(1) == 3
    assert g.y.shape == (1, 1) and g.y.dtype == torch.float32
    assert bench.eval_metric == "rmse" and not bench.higher_is_better
    y = torch.cat([d.y for d in bench.subset("test")])
    result = bench.evaluator.eval({"y_true": y.numpy(), "y_pred": (y * 0).numpy()})
    assert result["rmse"] > 0


def test_unknown_and_missing_datasets(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        load_dataset("ogbg-nonexistent", str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("pubmed", str(tmp_path))
    with pytest.raises(ValueError, match="node-level dataset"):
        load_dataset("cora", str(tmp_path))
    with pytest.raises(MissingDataError, match="ogbg_molhiv"):
        load_dataset("ogbg-molhiv", str(tmp_path))
    with pytest.raises(MissingDataError, match="peptide_multi_class_dataset.csv.gz"):
        load_dataset("peptides-func", str(tmp_path))
    with pytest.raises(MissingDataError, match="root"):
        load_dataset("ogbg-molhiv")


def test_peptides_loader_on_small_release_layout(tmp_path):
    peptides_release(tmp_path, ["CC(=O)NC", "NCC(=O)O", "CCO", "c1ccccc1O"],
                     {"train": [0, 1], "valid": [2], "test": [3]})
    bench = load_dataset("peptides-func", str(tmp_path))
    assert len(bench.dataset) == 4 and bench.num_tasks == 10 and bench.eval_metric == "ap"
    assert bench.dataset[2].x.size(0) == 3  # CCO: three heavy atoms
    assert bench.split["valid"].tolist() == [2]
    y = torch.cat([d.y for d in bench.dataset])
    assert bench.evaluator.eval({"y_true": y.numpy(), "y_pred": y.numpy()})["ap"] == pytest.approx(1.0)


@pytest.mark.skipif(PEPTIDES is None, reason="LRGB peptides-func not given (GRAPHATTN_SHARED_DATA)")
def test_real_peptides_func_counts(tmp_path):
    bench = load_dataset("peptides-func", str(PEPTIDES), cache_dir=str(tmp_path))
    assert len(bench.dataset) == 15535
    assert [len(bench.split[s]) for s in ("train", "valid", "test")] == [10873, 2331, 2331]
    assert not (PEPTIDES / "processed").exists()  # read-only data stays untouched
