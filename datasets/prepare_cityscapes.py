#!/usr/bin/env python
"""Create the ``*_gtFine_labelTrainIds.png`` files that detectron2's Cityscapes
semantic segmentation datasets read, from the ``*_gtFine_polygons.json`` files of
every split under the root, with cityscapesScripts' own conversion.

The root is ``--root``, else ``$DETECTRON2_DATASETS/cityscapes``, else
``./datasets/cityscapes`` (detectron2's convention).

    python datasets/prepare_cityscapes.py [--root PATH] [--force] [--workers N]
"""
import argparse
import glob
import os
import sys

from cityscapesscripts.preparation.json2labelImg import json2labelImg

from _prepare_common import add_common_arguments, default_root, require_dirs, run_conversions, write_atomically

JSON_SUFFIX = "_gtFine_polygons.json"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
HOW = "pass --root PATH or set DETECTRON2_DATASETS to the folder that contains cityscapes/"


def train_ids_file(json_file):
    return json_file[: -len(JSON_SUFFIX)] + TRAIN_IDS_SUFFIX


def convert(json_file, out):
    # cityscapesScripts exits on an unknown label; run_conversions reports it.
    write_atomically(out, lambda tmp: json2labelImg(json_file, tmp, "trainIds"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "Cityscapes root (default: $DETECTRON2_DATASETS/cityscapes, else ./datasets/cityscapes)")
    args = parser.parse_args(argv)

    root = args.root or default_root("cityscapes")
    require_dirs(root, "gtFine", how=HOW)
    gt_root = os.path.join(root, "gtFine")
    json_files = sorted(glob.glob(os.path.join(gt_root, "*", "*", "*" + JSON_SUFFIX)))
    if not json_files:
        sys.exit(f"error: no *{JSON_SUFFIX} files under {gt_root}/<split>/<city>/; is {root!r} a Cityscapes root?")
    splits = sorted({os.path.basename(os.path.dirname(os.path.dirname(f))) for f in json_files})
    jobs = [(f, train_ids_file(f)) for f in json_files]
    return run_conversions(jobs, convert, args.force, args.workers, what=f"{root} ({', '.join(splits)})")


if __name__ == "__main__":
    sys.exit(main())
