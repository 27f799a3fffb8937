#!/usr/bin/env python
"""Create the 59-class PASCAL Context labels from the official release:
``VOC2010/SegmentationClassContext59/<id>.png`` (ids 0..58, 255 for the
background and the other 400 classes) from ``trainval/<id>.mat`` (459-class
``LabelMap``, read with SciPy), and
``VOC2010/ImageSets/SegmentationContext/{train,val}.txt`` from the split of
``trainval_merged.json`` (4,998 and 5,105 images). No other tool is needed.

The root is ``--root`` (``VOCdevkit/VOC2010`` holding JPEGImages/ from VOC
2010, trainval/ from ``trainval.tar.gz`` and ``trainval_merged.json``), else
``$DETECTRON2_DATASETS/VOCdevkit/VOC2010``.

    python datasets/prepare_pascal_context.py [--root PATH] [--force] [--workers N]
"""
import argparse
import json
import os
import sys

import scipy.io

from _prepare_common import add_common_arguments, default_root, lookup_table, require_dirs, run_conversions, save_label, write_id_list

HOW = (
    "untar VOC2010 into $DETECTRON2_DATASETS/VOCdevkit and the release's trainval.tar.gz into VOCdevkit/VOC2010, "
    "put trainval_merged.json there, or pass --root PATH/VOC2010"
)
# The 59 classes' ids in the release's 459 classes (labels.txt), in class-id
# order; danet/data/datasets/register_pascal_context.py names them.
CONTEXT_59_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144, 158, 159,
    162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355, 360, 366, 368,
    397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
)  # fmt: skip
TABLE = lookup_table(CONTEXT_59_IDS, size=65536)  # LabelMap is uint16


def convert(source, out):
    save_label(TABLE[scipy.io.loadmat(source)["LabelMap"]], out)


def read_split(json_file):
    """{"train": [ids], "val": [ids]} from trainval_merged.json ("2008000002" is image 2008_000002)."""
    if not os.path.isfile(json_file):
        sys.exit(f"error: {json_file} does not exist; {HOW}")
    try:
        with open(json_file) as f:
            images = json.load(f)["images"]
        split = {"train": [], "val": []}
        for image in images:
            image_id = str(image["image_id"])
            split[image["phase"]].append(f"{image_id[:4]}_{image_id[4:]}")
    except (ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {json_file}: not PASCAL in Detail's trainval_merged.json ({type(e).__name__}: {e})")
    return split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "VOC2010 root (default: $DETECTRON2_DATASETS/VOCdevkit/VOC2010)")
    args = parser.parse_args(argv)
    root = args.root or default_root("VOCdevkit", "VOC2010")
    require_dirs(root, "JPEGImages", "trainval", how=HOW)
    split = read_split(os.path.join(root, "trainval_merged.json"))
    for name, ids in split.items():
        path = os.path.join(root, "ImageSets", "SegmentationContext", f"{name}.txt")
        write_id_list(sorted(ids), path)
        print(f"{path}: {len(ids)} images")
    jobs = [
        (os.path.join(root, "trainval", f"{i}.mat"), os.path.join(root, "SegmentationClassContext59", f"{i}.png"))
        for i in sorted(split["train"] + split["val"])
    ]
    return run_conversions(jobs, convert, args.force, args.workers, what=root)


if __name__ == "__main__":
    sys.exit(main())
