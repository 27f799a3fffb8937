import os
import subprocess
import sys
import uuid

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from detectron2.config import get_cfg  # noqa: E402

from danet import add_danet_config, register_cityscapes_sem_seg  # noqa: E402


def load_config(name="r50.yaml", *opts):
    """A config from configs/ set up for CPU tests: no downloads, plain BN."""
    cfg = get_cfg()
    add_danet_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", name))
    cfg.merge_from_list(
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.NORM", "BN",
         "MODEL.SEM_SEG_HEAD.NORM", "BN", *opts]
    )
    return cfg


# A ResNet-50 narrow enough for fast CPU tests; the DANet head keeps its design.
NARROW_RESNET = [
    "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 32,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
]


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
        done = subprocess.run([sys.executable, os.path.join(ROOT, "datasets", script), *map(str, args)],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    names = {"root": str(root), "datasets": str(datasets)}
    for split in ("train", "val"):
        names[split] = f"toy_{split}_{uuid.uuid4().hex[:8]}"
        register_cityscapes_sem_seg(names[split], str(root), split)
    return names
