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
from multiprocessing import Pool

from tqdm import tqdm

from cityscapesscripts.preparation.json2labelImg import json2labelImg

JSON_SUFFIX = "_gtFine_polygons.json"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"


def default_root():
    return os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "cityscapes")


def check_root(root):
    """The ``gtFine`` folder of ``root``, or a one-line error saying where else to look."""
    how = "pass --root PATH or set DETECTRON2_DATASETS to the folder that contains cityscapes/"
    if not os.path.isdir(root):
        sys.exit(f"error: Cityscapes root {root!r} does not exist; {how}")
    gt_root = os.path.join(root, "gtFine")
    if not os.path.isdir(gt_root):
        sys.exit(f"error: {root!r} has no gtFine/ folder (expected {gt_root}); {how}")
    return gt_root


def train_ids_file(json_file):
    return json_file[: -len(JSON_SUFFIX)] + TRAIN_IDS_SUFFIX


def is_up_to_date(json_file):
    out = train_ids_file(json_file)
    return os.path.isfile(out) and os.path.getmtime(out) >= os.path.getmtime(json_file)


def convert(json_file):
    """Returns (json_file, None) on success or (json_file, error message)."""
    out = train_ids_file(json_file)
    tmp = out[: -len(".png")] + ".tmp.png"  # the suffix tells Pillow the format
    try:
        json2labelImg(json_file, tmp, "trainIds")
        os.replace(tmp, out)  # never leave a half-written file that looks up to date
        return json_file, None
    except (Exception, SystemExit) as e:  # cityscapesScripts exits on an unknown label
        if os.path.exists(tmp):
            os.remove(tmp)
        return json_file, f"{type(e).__name__}: {e}".strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="Cityscapes root (default: $DETECTRON2_DATASETS/cityscapes, else ./datasets/cityscapes)")
    parser.add_argument("--force", action="store_true", help="convert even the files that are up to date")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes (default: all cores)")
    args = parser.parse_args(argv)

    root = args.root or default_root()
    gt_root = check_root(root)
    json_files = sorted(glob.glob(os.path.join(gt_root, "*", "*", "*" + JSON_SUFFIX)))
    if not json_files:
        sys.exit(f"error: no *{JSON_SUFFIX} files under {gt_root}/<split>/<city>/; is {root!r} a Cityscapes root?")
    todo = json_files if args.force else [f for f in json_files if not is_up_to_date(f)]
    skipped = len(json_files) - len(todo)

    failed = []
    with Pool(max(1, args.workers)) as pool:
        for json_file, error in tqdm(pool.imap_unordered(convert, todo, chunksize=8), total=len(todo), unit="file"):
            if error:
                failed.append(json_file)
                tqdm.write(f"failed: {json_file}: {error}", file=sys.stderr)
    splits = sorted({os.path.basename(os.path.dirname(os.path.dirname(f))) for f in json_files})
    print(
        f"{root} ({', '.join(splits)}): converted {len(todo) - len(failed)}, "
        f"skipped {skipped} (up to date), failed {len(failed)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
