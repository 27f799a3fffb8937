#!/usr/bin/env python
"""Create ``ADEChallengeData2016/annotations_detectron2``, the labels of
detectron2's ``ade20k_sem_seg_{train,val}``: each annotation of the official
release shifted down by one (ids 0..149), its 0 ("other") becoming 255.

The root is ``--root``, else ``$DETECTRON2_DATASETS/ADEChallengeData2016``.

    python datasets/prepare_ade20k.py [--root PATH] [--force] [--workers N]
"""
import argparse
import glob
import os
import sys

import numpy as np

from _prepare_common import add_common_arguments, check_ids, default_root, read_label, require_dirs, run_conversions, save_label

HOW = "unzip ADEChallengeData2016.zip into $DETECTRON2_DATASETS, or pass --root PATH/ADEChallengeData2016"
SPLITS = ("training", "validation")


def convert(source, out):
    label = read_label(source)
    check_ids(label, np.arange(151))
    save_label((label.astype(np.int64) - 1) % 256, out)  # 0 -> 255


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "ADE20K root (default: $DETECTRON2_DATASETS/ADEChallengeData2016)")
    args = parser.parse_args(argv)
    root = args.root or default_root("ADEChallengeData2016")
    require_dirs(root, "images", "annotations", how=HOW)
    jobs = [
        (source, os.path.join(root, "annotations_detectron2", split, os.path.basename(source)))
        for split in SPLITS
        for source in sorted(glob.glob(os.path.join(root, "annotations", split, "*.png")))
    ]
    if not jobs:
        sys.exit(f"error: no annotations/{{training,validation}}/*.png under {root!r}; {HOW}")
    return run_conversions(jobs, convert, args.force, args.workers, what=root)


if __name__ == "__main__":
    sys.exit(main())
