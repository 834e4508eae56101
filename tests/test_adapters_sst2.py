"""The SST-2 TSV folder loader."""
import os

import pytest

from graphattn.data.sst2 import load_sst2
from helpers import shared_data


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
        handle.write(text)


def test_load_folder(tmp_path):
    _write(tmp_path, "train.tsv", "sentence\tlabel\nit 's a \"charming\" film . \t1\ndull \t0\n")
    _write(tmp_path, "test.tsv", "sentence\tlabel\nbleak\t0\n")
    data = load_sst2(str(tmp_path))
    assert set(data) == {"train", "test"}
    assert data["train"].sentences == ['it \'s a "charming" film .', "dull"] and data["train"].labels == [1, 0]
    assert len(data["test"]) == 1


def test_bad_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_sst2(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="none of"):
        load_sst2(str(tmp_path))
    _write(tmp_path, "dev.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(ValueError, match="header"):
        load_sst2(str(tmp_path))
    _write(tmp_path, "dev.tsv", "sentence\tlabel\nx\t2\n")
    with pytest.raises(ValueError, match="dev.tsv:2"):
        load_sst2(str(tmp_path))


@pytest.mark.skipif(shared_data("sst2") is None, reason="real SST-2 copy not given (GRAPHATTN_SHARED_DATA)")
def test_real_copy_sizes():
    data = load_sst2(str(shared_data("sst2")))
    assert (len(data["train"]), len(data["dev"]), len(data["test"])) == (60614, 6735, 872)
