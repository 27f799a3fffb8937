#!/usr/bin/env python
"""Create the PASCAL VOC 2012 "aug" training set of the papers:
``VOC2012/SegmentationClassAug/<id>.png`` (class ids 0..20, 255 on
boundaries) from VOC's own labels and, for the images VOC does not annotate,
from SBD's ``cls/<id>.mat`` (read with SciPy), and
``VOC2012/ImageSets/Segmentation/train_aug.txt``: VOC train and SBD train+val
without VOC val (10,582 images in the full release).

The root is ``--root`` (``VOCdevkit/VOC2012``), else
``$DETECTRON2_DATASETS/VOCdevkit/VOC2012``; SBD (``benchmark.tgz``) is
``--sbd``, else ``$DETECTRON2_DATASETS/benchmark_RELEASE``.

    python datasets/prepare_voc.py [--root PATH] [--sbd PATH | --no-sbd] [--force] [--workers N]
"""
import argparse
import glob
import os
import sys

import numpy as np
import scipy.io

from _prepare_common import (
    add_common_arguments,
    check_ids,
    default_root,
    read_id_list,
    read_label,
    require_dirs,
    run_conversions,
    save_label,
    write_id_list,
)

HOW = "untar VOCtrainval_11-May-2012.tar into $DETECTRON2_DATASETS, or pass --root PATH/VOCdevkit/VOC2012"
SBD_HOW = "untar SBD's benchmark.tgz into $DETECTRON2_DATASETS, pass --sbd PATH/benchmark_RELEASE, or --no-sbd"
VALID_IDS = np.append(np.arange(21), 255)


def convert(source, out):
    if source.endswith(".mat"):
        label = scipy.io.loadmat(source, squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
    else:
        label = read_label(source)  # VOC's palette PNG: its indices are the class ids
    check_ids(label, VALID_IDS)
    save_label(label, out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "VOC2012 root (default: $DETECTRON2_DATASETS/VOCdevkit/VOC2012)")
    parser.add_argument("--sbd", default=None, help="SBD root (default: $DETECTRON2_DATASETS/benchmark_RELEASE)")
    parser.add_argument("--no-sbd", action="store_true", help="train_aug without SBD: VOC train only (1,464 images)")
    args = parser.parse_args(argv)
    root = args.root or default_root("VOCdevkit", "VOC2012")
    require_dirs(root, "JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation"), how=HOW)
    lists = os.path.join(root, "ImageSets", "Segmentation")
    voc_train, voc_val = (read_id_list(os.path.join(lists, f"{s}.txt"), HOW) for s in ("train", "val"))
    out_dir = os.path.join(root, "SegmentationClassAug")
    jobs = {
        os.path.splitext(os.path.basename(f))[0]: f for f in glob.glob(os.path.join(root, "SegmentationClass", "*.png"))
    }
    sbd_ids = []
    if not args.no_sbd:
        sbd = args.sbd or default_root("benchmark_RELEASE")
        require_dirs(sbd, os.path.join("dataset", "cls"), how=SBD_HOW)
        sbd_ids = [i for s in ("train", "val") for i in read_id_list(os.path.join(sbd, "dataset", f"{s}.txt"), SBD_HOW)]
        for image_id in sbd_ids:
            jobs.setdefault(image_id, os.path.join(sbd, "dataset", "cls", f"{image_id}.mat"))  # VOC's label first
    train_aug = sorted(set(voc_train + sbd_ids) - set(voc_val))
    missing = [i for i in train_aug + voc_val if i not in jobs]
    if missing:
        sys.exit(f"error: no label for {missing[0]} (and {len(missing) - 1} more) in SegmentationClass/ or SBD's cls/")
    write_id_list(train_aug, os.path.join(lists, "train_aug.txt"))
    print(f"{os.path.join(lists, 'train_aug.txt')}: {len(train_aug)} images")
    pairs = [(source, os.path.join(out_dir, f"{image_id}.png")) for image_id, source in sorted(jobs.items())]
    return run_conversions(pairs, convert, args.force, args.workers, what=root)


if __name__ == "__main__":
    sys.exit(main())
