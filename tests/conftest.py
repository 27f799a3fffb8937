import os
import subprocess
import sys
import uuid

import pytest
import torch

from helpers import REPO  # noqa: E402  (puts the repository on sys.path)

from danet import register_cityscapes_sem_seg  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def toy_cityscapes(tmp_path_factory):
    """A tiny generated Cityscapes (4 train, 2 val images of 128x64) with its
    labelTrainIds, registered under unique names: {"root", "train", "val",
    "datasets"}. With DETECTRON2_DATASETS set to "datasets", a subprocess finds
    it as toy_cityscapes_fine_sem_seg_{train,val}."""
    datasets = tmp_path_factory.mktemp("datasets")
    root = datasets / "toy_cityscapes"
    for script, *args in (
        ("make_toy_cityscapes.py", "--out", root, "--width", 128, "--height", 64, "--train", 4, "--val", 2),
        ("prepare_cityscapes.py", "--root", root),
    ):
        done = subprocess.run([sys.executable, os.path.join(REPO, "datasets", script), *map(str, args)],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    names = {"root": str(root), "datasets": str(datasets)}
    for split in ("train", "val"):
        names[split] = f"toy_{split}_{uuid.uuid4().hex[:8]}"
        register_cityscapes_sem_seg(names[split], str(root), split)
    return names
