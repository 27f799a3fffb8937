"""A few CPU iterations of the demo config on a tiny generated dataset, through train_net.py."""
import glob
import json
import os

import numpy as np
import pytest

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from helpers import REPO
from danet import add_danet_config
from danet.visualization import side_by_side
from train_net import Trainer


def test_short_training_run_evaluates_to_the_four_metrics(toy_cityscapes, tmp_path):
    cfg = get_cfg()
    add_danet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "demo.yaml"))
    cfg.merge_from_list([
        "DATASETS.TRAIN", (toy_cityscapes["train"],), "DATASETS.TEST", (toy_cityscapes["val"],),
        "SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.WARMUP_ITERS", 1,
        "INPUT.SCALE.BASE_SIZE", 128, "INPUT.CROP.SIZE", (64, 96),
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
        "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(tmp_path),
    ])  # fmt: skip
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    with open(tmp_path / "metrics.json") as f:
        logged = [json.loads(line) for line in f]
    assert [m["iteration"] for m in logged if "loss_fused" in m][-1] == 2
    assert all(np.isfinite(m["total_loss"]) for m in logged if "total_loss" in m)
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert os.path.isfile(tmp_path / "model_final.pth")

    results = Trainer.test(cfg, trainer.model)["sem_seg"]
    for key in ("pACC", "mACC", "mIoU", "fwIoU"):
        assert 0 <= results[key] <= 100


def test_side_by_side_uses_the_cityscapes_palette():
    meta = MetadataCatalog.get("cityscapes_fine_sem_seg_val")
    image = np.full((4, 6, 3), 7, np.uint8)
    gt = np.zeros((4, 6), np.uint8)
    gt[0] = 255
    prediction = np.full((4, 6), 13, np.uint8)  # car
    picture = side_by_side(image, gt, prediction, meta.stuff_colors, gap=2)
    assert picture.shape == (4, 6 * 3 + 2 * 2, 3)
    assert (picture[:, :6] == 7).all() and (picture[:, 6:8] == 255).all()
    assert (picture[1:, 8:14] == [128, 64, 128]).all() and (picture[0, 8:14] == 0).all()
    assert (picture[:, 16:] == [0, 0, 142]).all()
    with pytest.raises(ValueError, match="differ in size"):
        side_by_side(image, gt[:2], prediction, meta.stuff_colors)
