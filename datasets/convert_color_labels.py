#!/usr/bin/env python
"""Turn RGB colour labels into the single-channel class-id PNGs that training
reads, from the colours of the dataset's ``classes.yaml``.

Every RGB/RGBA PNG under ``<root>/labels`` is replaced in place (atomically) by
its ids; single-channel labels are left as they are, so a second run converts
nothing. A colour that is no class's is an error naming the file, unless
``--unknown-as-ignore`` maps it to the ignore label.

    python datasets/convert_color_labels.py --root my_data [--classes my_data/classes.yaml]
"""
import argparse
import functools
import glob
import os
import sys

import numpy as np
import yaml
from PIL import Image

from _prepare_common import run_conversions, save_label


def color_lookup(colors):
    """{packed 0xRRGGBB: class id}."""
    return {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(colors)}


def convert(color_file, out, lookup, ignore_label, unknown_as_ignore):
    with Image.open(color_file) as picture:
        rgb = np.asarray(picture.convert("RGB")).astype(np.int64)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values, inverse = np.unique(packed, return_inverse=True)
    unknown = [v for v in values if v not in lookup]
    if unknown and not unknown_as_ignore:
        shown = [[v >> 16, (v >> 8) & 255, v & 255] for v in unknown[:3]]
        raise ValueError(f"colours {shown} are no class's colour (add them to colors, or pass --unknown-as-ignore)")
    ids = np.array([lookup.get(v, ignore_label) for v in values], dtype=np.uint8)
    save_label(ids[inverse].reshape(packed.shape), out)


def is_color_picture(path):
    with Image.open(path) as picture:
        return picture.mode in ("RGB", "RGBA")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="dataset root holding labels/ and classes.yaml")
    parser.add_argument("--classes", default=None, help="class file with colors (default: <root>/classes.yaml)")
    parser.add_argument("--unknown-as-ignore", action="store_true", help="write the ignore label for unknown colours")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes (default: all cores)")
    args = parser.parse_args(argv)

    classes_file = args.classes or os.path.join(args.root, "classes.yaml")
    if not os.path.isfile(classes_file):
        sys.exit(f"error: no class file {classes_file}; pass --classes FILE with classes and colors")
    with open(classes_file) as f:
        spec = yaml.safe_load(f) or {}
    colors = spec.get("colors") if isinstance(spec, dict) else None
    if not colors:
        sys.exit(f"error: {classes_file} has no `colors: [[R, G, B], ...]` (one per class) to convert from")
    label_root = os.path.join(args.root, "labels")
    if not os.path.isdir(label_root):
        sys.exit(f"error: {args.root!r} has no labels/ folder (expected {label_root})")
    labels = sorted(glob.glob(os.path.join(label_root, "**", "*.png"), recursive=True))
    color_labels = [f for f in labels if is_color_picture(f)]
    print(f"{len(labels) - len(color_labels)} of {len(labels)} labels already hold class ids")
    convert_file = functools.partial(
        convert,
        lookup=color_lookup(colors),
        ignore_label=spec.get("ignore_label", 255),
        unknown_as_ignore=args.unknown_as_ignore,
    )
    jobs = [(f, f) for f in color_labels]
    return run_conversions(jobs, convert_file, force=True, workers=args.workers, what=label_root)


if __name__ == "__main__":
    sys.exit(main())
