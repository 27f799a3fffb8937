"""Your own data: the whole-dataset check reads each label once, not at every
start and evaluation. What passed is recorded in OUTPUT_DIR (by path, size
and modification time), changed files are checked again, and progress is logged."""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog

from danet.config import load_config
from danet.data.datasets import register_folder
from danet.errors import InputError
from helpers import BASE_CONFIG
from test_datasets_folder import folder_opts, make_folder_dataset


@pytest.fixture
def reads(monkeypatch):
    """The labels check_label reads, in any order."""
    read = []
    check_label = register_folder.check_label

    def counting(image_file, label_file, *args, **kwargs):
        read.append(os.path.basename(label_file))
        return check_label(image_file, label_file, *args, **kwargs)

    monkeypatch.setattr(register_folder, "check_label", counting)
    return read


def register(root, name, output, *opts):
    load_config(BASE_CONFIG, [*folder_opts(root, name), "OUTPUT_DIR", str(output), *opts])
    return f"{name}_sem_seg_train"


def rewrite_label(path, value):
    label = np.array(Image.open(path))
    label[0, 0] = value
    Image.fromarray(label).save(path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))


def test_labels_checked_once_are_not_read_again(tmp_path, reads, caplog, monkeypatch):
    monkeypatch.setattr(register_folder, "PROGRESS_SECONDS", 0)
    root = make_folder_dataset(tmp_path / "data", num_images=4)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    train = register(root, "recorded", tmp_path / "output")
    with caplog.at_level(logging.INFO, logger=register_folder.__name__):
        first = DatasetCatalog.get(train)
    assert sorted(reads) == [f"train_{i}.png" for i in range(4)]
    assert "Checking 4 image/label pairs under" in caplog.text
    assert [f"Checked {i}/4 pairs under" in caplog.text for i in range(1, 5)] == [True] * 4
    assert (tmp_path / "output" / "checked_labels" / f"{train}.json").is_file()
    # Nothing written into the dataset folder, which may be read-only.
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before

    reads.clear()
    record = tmp_path / "output" / "checked_labels" / f"{train}.json"
    written = record.stat().st_mtime_ns
    assert DatasetCatalog.get(register(root, "recorded", tmp_path / "output")) == first
    assert reads == []
    assert record.stat().st_mtime_ns == written, "a load with nothing to check rewrote the record"
    rewrite_label(root / "labels" / "train" / "train_2.png", 1)
    assert DatasetCatalog.get(train) == first
    assert reads == ["train_2.png"]


def test_a_changed_label_is_checked_again(tmp_path, reads):
    root = make_folder_dataset(tmp_path / "data")
    train = register(root, "changed", tmp_path / "output")
    DatasetCatalog.get(train)
    rewrite_label(root / "labels" / "train" / "train_1.png", 7)  # beyond the 3 classes
    with pytest.raises(InputError, match=r"train_1.png: ids \[7\] are beyond the 3 classes"):
        DatasetCatalog.get(train)


def test_a_record_for_other_classes_counts_for_nothing(tmp_path, reads):
    root = make_folder_dataset(tmp_path / "data")
    DatasetCatalog.get(register(root, "classes", tmp_path / "output"))
    reads.clear()
    two_classes = ["DATASETS.CUSTOM.CLASSES", "['background', 'road']", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "2"]
    with pytest.raises(InputError, match="are beyond the 2 classes"):
        DatasetCatalog.get(register(root, "classes", tmp_path / "output", *two_classes))
    assert reads


def test_pairs_checked_before_a_bad_file_are_recorded(tmp_path, reads):
    """After the fix only the rest is read (those the check had not reached)."""
    root = make_folder_dataset(tmp_path / "data", num_images=3)
    bad = root / "labels" / "train" / "train_1.png"
    rewrite_label(bad, 9)
    train = register(root, "stopped", tmp_path / "output")
    with pytest.raises(InputError, match="train_1.png: ids"):
        DatasetCatalog.get(train)
    rewrite_label(bad, 0)
    reads.clear()
    DatasetCatalog.get(train)
    assert "train_0.png" not in reads and "train_1.png" in reads
