#!/usr/bin/env python
"""After `train_net.py` has trained and evaluated: print the metrics with the
per-class IoU, and save image | ground truth | prediction pictures.

    python tools/demo_report.py --config-file configs/demo.yaml [--pictures 8]

Reads OUTPUT_DIR/model_final.pth and OUTPUT_DIR/sem_seg_evaluation.pth, writes
OUTPUT_DIR/pictures/*.png.
"""
import argparse
import math
import os
import sys

import cv2
import numpy as np
import torch
from tabulate import tabulate

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor

# The danet package lives in the repository root, one level up.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from danet import add_danet_config  # noqa: E402
from danet.evaluation import summary_table  # noqa: E402
from danet.visualize import side_by_side  # noqa: E402


def per_class_table(results, classes):
    """IoU of every class present in the ground truth or the predictions."""
    rows = [(name, f"{results[f'IoU-{name}']:.2f}") for name in classes if not math.isnan(results[f"IoU-{name}"])]
    return tabulate(rows, headers=["class", "IoU %"], tablefmt="pipe")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--pictures", type=int, default=8, help="how many validation images to draw")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args()
    cfg = get_cfg()
    add_danet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")

    results_file = os.path.join(cfg.OUTPUT_DIR, "sem_seg_evaluation.pth")
    for path in (cfg.MODEL.WEIGHTS, results_file):
        if not os.path.isfile(path):
            sys.exit(f"error: {path} not found: train first with train_net.py --config-file {args.config_file}")
    dataset = cfg.DATASETS.TEST[0]
    metadata = MetadataCatalog.get(dataset)
    results = torch.load(results_file, weights_only=False)
    print(f"Results on {dataset}:\n{summary_table(results)}\n\n{per_class_table(results, metadata.stuff_classes)}")

    predictor = DefaultPredictor(cfg)
    out_dir = os.path.join(cfg.OUTPUT_DIR, "pictures")
    os.makedirs(out_dir, exist_ok=True)
    records = DatasetCatalog.get(dataset)[: args.pictures]
    for record in records:
        bgr = cv2.imread(record["file_name"])
        prediction = predictor(bgr)["sem_seg"].argmax(dim=0).numpy()
        gt = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_GRAYSCALE)
        picture = side_by_side(bgr[:, :, ::-1], gt, prediction, metadata)
        name = os.path.basename(record["file_name"]).replace("_leftImg8bit", "")
        cv2.imwrite(os.path.join(out_dir, name), np.ascontiguousarray(picture[:, :, ::-1]))
    print(f"Saved {len(records)} pictures to {out_dir}")


if __name__ == "__main__":
    main()
