#!/usr/bin/env python
"""Segment your own images with a DANet config and weights.

    python demo.py --config-file configs/r50.yaml --input frames/ "more/*.jpg" --output out/ \\
        --opts MODEL.WEIGHTS output/r50/model_final.pth
    python demo.py --config-file configs/r50.yaml --output out/ --input frames/ -- \\
        MODEL.WEIGHTS output/r50/model_final.pth

For each image it writes ``<stem>_pred.png`` (uint8 train ids; 255 where the
top softmax probability is below --confidence-threshold, so never by default)
and ``<stem>_vis.png`` (the image blended with the class colours, with a legend
of the classes present). TEST.AUG.* and TEST.SLIDING_WINDOW.* apply as in
evaluation. Unreadable files are reported and skipped; the exit status is 1 if
any was. Config overrides are trailing KEY VALUE pairs (after `--` when they
follow --input, which takes many values) or follow --opts, as in detectron2's demo.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

from danet import cli
from danet.data.datasets import class_names_and_colors
from danet.engine import SegmentationPredictor, build_inference_model
from danet.errors import InputError, exit_on_input_error
from danet.modeling import build_test_time_segmentor
from danet.visualization import side_by_side


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_config_arguments(parser)
    cli.add_image_arguments(parser, output_help="folder for <stem>_pred.png and <stem>_vis.png")
    cli.add_prediction_arguments(parser)
    parser.add_argument(
        "--ground-truth",
        action="store_true",
        help="for Cityscapes-layout inputs, also write <stem>_compare.png: image | ground truth "
        "(gtFine/..._gtFine_labelTrainIds.png) | prediction",
    )
    return parser


def cityscapes_ground_truth(image_path):
    """The labelTrainIds file of ``<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``."""
    marker = f"{os.sep}leftImg8bit{os.sep}"
    if marker not in image_path or not image_path.endswith("_leftImg8bit.png"):
        raise InputError(f"{image_path} is not in the Cityscapes layout (.../leftImg8bit/<split>/<city>/*_leftImg8bit.png)")
    root, _, rest = image_path.rpartition(marker)
    gt_path = os.path.join(root, "gtFine", rest.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
    if not os.path.isfile(gt_path):
        raise InputError(f"No ground truth {gt_path} for {image_path}: run datasets/prepare_cityscapes.py")
    return np.array(Image.open(gt_path))


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)
    with exit_on_input_error("demo.py"):
        paths = cli.list_inputs(args.input)
        cli.output_folder(args.output)
        cfg = cli.config_from_args(args)
        names, colors = class_names_and_colors(cfg)
        model = build_test_time_segmentor(cfg, build_inference_model(cfg), augment=cfg.TEST.AUG.ENABLED)
    predictor = SegmentationPredictor(cfg, model)

    def segment(path, image):
        train_ids = cli.predict_train_ids(predictor(image), args.confidence_threshold)
        stem = cli.save_prediction(args.output, path, image, train_ids, names, colors, args.opacity)
        if args.ground_truth:
            gt = cityscapes_ground_truth(os.path.abspath(path))
            Image.fromarray(side_by_side(image, gt, train_ids, colors)).save(stem + "_compare.png")

    return cli.for_each_image(paths, segment, desc="demo")


if __name__ == "__main__":
    sys.exit(main())
