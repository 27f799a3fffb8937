#!/usr/bin/env python
"""Segment your own images with a DANet config and weights.

    python demo.py --config-file configs/r50.yaml --input frames/ "more/*.jpg" --output out/ \\
        --opts MODEL.WEIGHTS output/r50/model_final.pth

For each image it writes ``<stem>_pred.png`` (uint8 train ids; 255 where the
top softmax probability is below --confidence-threshold, so never by default)
and ``<stem>_vis.png`` (the image blended with the class colours, with a legend
of the classes present). TEST.AUG.* and TEST.SLIDING_WINDOW.* apply as in
evaluation. Unreadable files are reported and skipped; the exit status is 1 if
any was.
"""
import argparse
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image

from danet.config import load_config
from danet.data.datasets import pascal_palette
from danet.engine import SegmentationPredictor, build_inference_model
from danet.errors import InputError, exit_on_input_error
from danet.modeling import build_test_time_segmentor
from danet.visualization import NO_PREDICTION, blend_with_legend, side_by_side

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--input", required=True, nargs="+", help="image files, folders (their images) or glob patterns"
    )
    parser.add_argument("--output", required=True, help="folder for <stem>_pred.png and <stem>_vis.png")
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.0,
        help="pixels whose top class probability is below this are written as 255",
    )
    parser.add_argument("--opacity", type=float, default=0.5, help="opacity of the class colours")
    parser.add_argument(
        "--ground-truth",
        action="store_true",
        help="for Cityscapes-layout inputs, also write <stem>_compare.png: image | ground truth "
        "(gtFine/..._gtFine_labelTrainIds.png) | prediction",
    )
    # As in detectron2's demo: --input takes many values, so overrides follow --opts.
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs"
    )
    return parser


def setup_cfg(args):
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    return cfg


def list_inputs(patterns):
    """Files named directly or matched by a glob, and the images inside folders.
    Raises ValueError naming a pattern that matches nothing."""
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = [
                os.path.join(pattern, name)
                for name in sorted(os.listdir(pattern))
                if name.lower().endswith(IMAGE_EXTENSIONS)
            ]
        else:
            found = sorted(glob.glob(os.path.expanduser(pattern)))
        if not found:
            raise ValueError(
                f"--input {pattern!r}: no such file, no images in that folder, or nothing matches "
                "(config overrides go after --opts)"
            )
        paths.extend(found)
    stems = {}
    for path in paths:
        stems.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    clashes = [paths for paths in stems.values() if len(paths) > 1]
    if clashes:
        raise ValueError(
            f"--input: these files would write the same outputs; run them separately: {clashes[0]}"
        )
    return paths


def class_names_and_colors(cfg):
    """Names and RGB colours of the classes from the metadata of the config's
    dataset (DATASETS.TEST[0], else DATASETS.TRAIN[0]); without metadata,
    "class <id>" in the PASCAL palette."""
    datasets = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
    meta = MetadataCatalog.get(datasets[0]) if datasets else None
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    names = getattr(meta, "stuff_classes", None) or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise InputError(
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {num_classes} but dataset {datasets[0]!r} has {len(names)} "
            "classes; set DATASETS.TEST to the model's dataset"
        )
    colors = getattr(meta, "stuff_colors", None) or pascal_palette(len(names))
    return list(names), np.array(colors, dtype=np.uint8)


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


def predict_train_ids(logits, confidence_threshold=0.0):
    """[K, H, W] logits -> uint8 train ids, NO_PREDICTION where the top softmax
    probability is below the threshold."""
    train_ids = logits.argmax(dim=0)
    if confidence_threshold > 0:
        confidence = logits.softmax(dim=0).max(dim=0).values
        train_ids[confidence < confidence_threshold] = NO_PREDICTION
    return train_ids.to(torch.uint8).cpu().numpy()


def save_prediction(output_dir, path, image, train_ids, names, colors, opacity):
    """Write ``<stem>_pred.png`` and ``<stem>_vis.png`` of one image into
    ``output_dir``; returns the path stem for further pictures."""
    stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
    Image.fromarray(train_ids).save(stem + "_pred.png")
    Image.fromarray(blend_with_legend(image, train_ids, names, colors, opacity)).save(stem + "_vis.png")
    return stem


def for_each_image(paths, process, desc):
    """``process(path, rgb_image)`` for each image; an unreadable file, or one
    ``process`` rejects with an InputError, is reported and skipped. Returns
    the paths that failed."""
    failed = []
    for path in tqdm(paths, desc=desc, unit="image"):
        try:
            image = read_image(path, format="RGB")
        except Exception as e:  # any unreadable file: report it and go on
            tqdm.write(f"Skipped {path}: not a readable image ({e})", file=sys.stderr)
            failed.append(path)
            continue
        try:
            process(path, image)
        except InputError as e:
            tqdm.write(f"Skipped {path}: {e}", file=sys.stderr)
            failed.append(path)
    return failed


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.confidence_threshold <= 1:
        parser.error(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    try:
        paths = list_inputs(args.input)
    except ValueError as e:
        parser.error(str(e))
    with exit_on_input_error("demo.py"):
        cfg = setup_cfg(args)
        names, colors = class_names_and_colors(cfg)
        model = build_test_time_segmentor(cfg, build_inference_model(cfg), augment=cfg.TEST.AUG.ENABLED)
    predictor = SegmentationPredictor(cfg, model)
    os.makedirs(args.output, exist_ok=True)

    def segment(path, image):
        train_ids = predict_train_ids(predictor(image), args.confidence_threshold)
        stem = save_prediction(args.output, path, image, train_ids, names, colors, args.opacity)
        if args.ground_truth:
            gt = cityscapes_ground_truth(os.path.abspath(path))
            Image.fromarray(side_by_side(image, gt, train_ids, colors)).save(stem + "_compare.png")

    failed = for_each_image(paths, segment, desc="demo")
    if failed:
        tqdm.write(f"{len(failed)} of {len(paths)} inputs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
