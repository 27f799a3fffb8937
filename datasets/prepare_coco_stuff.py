#!/usr/bin/env python
"""Create ``coco/stuffthingmaps_detectron2/{train2017,val2017}``, the labels of
``coco_2017_{train,val}_stuff_sem_seg``: the PNGs of
``stuffthingmaps_trainval2017.zip`` (COCO category id minus one) mapped to the
171 contiguous ids of COCO-Stuff, unused ids and unlabelled pixels to 255.

The root is ``--root`` (the folder holding train2017/, val2017/ and
stuffthingmaps_trainval2017/), else ``$DETECTRON2_DATASETS/coco``.

    python datasets/prepare_coco_stuff.py [--root PATH] [--force] [--workers N]
"""
import argparse
import glob
import os
import sys

from _prepare_common import add_common_arguments, default_root, lookup_table, read_label, require_dirs, run_conversions, save_label

HOW = "unzip stuffthingmaps_trainval2017.zip into <coco>/stuffthingmaps_trainval2017/, or pass --root PATH/coco"
MAPS = "stuffthingmaps_trainval2017"
# COCO's 91 thing ids include 11 that no image uses; the 91 stuff ids are 92..182.
UNUSED_THING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
# Pixel value (category id - 1) of each COCO-Stuff class, in class-id order.
MAP_VALUES = [i - 1 for i in range(1, 183) if i not in UNUSED_THING_IDS]
TABLE = lookup_table(MAP_VALUES)


def convert(source, out):
    save_label(TABLE[read_label(source)], out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "COCO root (default: $DETECTRON2_DATASETS/coco)")
    args = parser.parse_args(argv)
    root = args.root or default_root("coco")
    require_dirs(root, MAPS, how=HOW)
    jobs = [
        (source, os.path.join(root, "stuffthingmaps_detectron2", os.path.relpath(source, os.path.join(root, MAPS))))
        for source in sorted(glob.glob(os.path.join(root, MAPS, "*2017", "*.png")))
    ]
    if not jobs:
        sys.exit(f"error: no {MAPS}/{{train2017,val2017}}/*.png under {root!r}; {HOW}")
    return run_conversions(jobs, convert, args.force, args.workers, what=root)


if __name__ == "__main__":
    sys.exit(main())
