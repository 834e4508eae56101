r"""SST-2 (GLUE) sentiment sentences from a folder of tab-separated files.

The folder holds ``train.tsv``, ``dev.tsv`` and ``test.tsv`` (any subset), each with a
header line ``sentence<TAB>label`` and one ``sentence<TAB>0|1`` row per sentence, as in the
GLUE distribution (whose labelled ``dev`` split is often used as the test set).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

__all__ = ["SST2Split", "load_sst2", "SST2_SPLITS"]

SST2_SPLITS = ("train", "dev", "test")


@dataclass
class SST2Split:
    """One split: ``sentences[i]`` has label ``labels[i]`` (0 negative, 1 positive)."""

    sentences: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.sentences)


def _read(path: str) -> SST2Split:
    sentences, labels = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["sentence", "label"]:
            raise ValueError(f"{path}: expected a header 'sentence<TAB>label', got {header}")
        for line, row in enumerate(reader, start=2):
            if len(row) < 2 or row[1].strip() not in ("0", "1"):
                raise ValueError(f"{path}:{line}: expected 'sentence<TAB>0|1', got {row}")
            sentences.append(row[0].strip())
            labels.append(int(row[1]))
    return SST2Split(sentences, labels)


def load_sst2(root: str) -> dict[str, SST2Split]:
    """Reads every ``{train,dev,test}.tsv`` present in ``root``.

    Raises:
        FileNotFoundError: ``root`` holds none of the three files.
        ValueError: a file is not in the ``sentence<TAB>label`` format.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"SST-2 folder {root!r} does not exist")
    splits = {s: _read(os.path.join(root, f"{s}.tsv")) for s in SST2_SPLITS
              if os.path.isfile(os.path.join(root, f"{s}.tsv"))}
    if not splits:
        raise FileNotFoundError(f"{root!r} holds none of train.tsv, dev.tsv, test.tsv")
    return splits
