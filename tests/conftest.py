import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from detectron2.config import get_cfg  # noqa: E402

from danet import add_danet_config  # noqa: E402


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
