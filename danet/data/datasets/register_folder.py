"""Your own data without Python: a folder of images and a folder of label PNGs.

Layout (each split a pair of folders; sub-folders inside a split are allowed
and must match)::

    my_data/
      classes.yaml            # optional when the config names the classes
      images/train/*.jpg      # any of .jpg .jpeg .png .bmp .tif .tiff .webp
      labels/train/*.png      # same relative path and stem as the image
      images/val/...
      labels/val/...

``classes.yaml``::

    classes: [background, road, car]      # id 0, 1, 2 in the label PNGs
    colors: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional
    ignore_label: 255                      # optional, default 255

The config's ``DATASETS.CUSTOM.ROOT`` registers ``<NAME>_sem_seg_<split>`` for
every split (NAME defaults to the folder's name); ``DATASETS.CUSTOM.CLASSES``,
``COLORS`` and ``IGNORE_LABEL`` replace the file. Loading checks the whole
dataset before training starts and stops with one line naming the file.

What was checked is remembered in ``OUTPUT_DIR/checked_labels/<dataset>.json``
(by path, size and modification time of each image and label, and the class
count and ignore label checked against): later loads (evaluations, a resumed
run, ``--eval-only``) read only the files that changed. The record lives in
OUTPUT_DIR, as detectron2's own derived dataset files do, because the dataset
folder may be read-only or shared; a new OUTPUT_DIR checks once more.
"""
import functools
import json
import logging
import os
import time
from multiprocessing.pool import ThreadPool

import numpy as np
import yaml
from PIL import Image

from ...errors import InputError, MissingInputError
from ...file_io import write_atomically
from .loaders import pair_images_with_labels, register_sem_seg
from .metadata import sem_seg_metadata

logger = logging.getLogger(__name__)

CLASSES_FILE = "classes.yaml"
# The check of a folder dataset logs how far it is this often.
PROGRESS_SECONDS = 10
CONVERT = "python datasets/convert_color_labels.py --root {root}"


EXIF_ORIENTATION = 0x0112


def _upright_size(image):
    """(width, height) as detectron2's read_image gives it: EXIF orientations
    5 to 8 (a phone held upright) swap the stored width and height."""
    width, height = image.size
    return (height, width) if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)


def check_label(image_file, label_file, num_classes, ignore_label, root):
    """Raise an InputError naming ``label_file`` if it is an RGB colour
    picture, differs in size from its image, or holds ids that are neither a
    class nor the ignore label; return the image's (height, width)."""
    with Image.open(image_file) as image, Image.open(label_file) as label:
        if label.mode in ("RGB", "RGBA"):
            raise InputError(
                f"{label_file}: an {label.mode} colour picture, but labels hold one class id per pixel; "
                f"convert colour labels with `{CONVERT.format(root=root)}` (uses the colours of {CLASSES_FILE})"
            )
        width, height = _upright_size(image)
        if label.size != (width, height):
            raise InputError(
                f"{label_file}: label is {label.size[0]}x{label.size[1]} but its image {image_file} is {width}x{height}"
            )
        ids = np.asarray(label)
    if ids.ndim != 2:
        raise InputError(f"{label_file}: a {label.mode} picture, but labels hold one class id per pixel (one channel)")
    ids = np.unique(ids)
    bad = ids[(ids >= num_classes) & (ids != ignore_label)]
    if bad.size:
        raise InputError(
            f"{label_file}: ids {bad[:5].tolist()} are beyond the {num_classes} classes (0..{num_classes - 1}) "
            f"and the ignore label {ignore_label}: fix the file or the class list"
        )
    return height, width


def load_sem_seg_folder(image_dir, label_dir, num_classes, ignore_label, root, record_file=None):
    """detectron2 dataset dicts of image/label pairs, checked as a whole:
    every label is read (in threads) for colour pictures, sizes and ids, but
    for pairs that ``record_file`` (a JSON file, or None) lists unchanged
    since they were checked. Checked pairs are recorded there, also when a
    bad file stops the check."""
    pairs = pair_images_with_labels(image_dir, label_dir)
    record = CheckRecord(record_file, num_classes, ignore_label)
    stamps = {pair: _stamp(pair) for pair in pairs}
    sizes = {pair: record.size(pair, stamps[pair]) for pair in pairs}
    unchecked = [pair for pair in pairs if sizes[pair] is None]
    check = functools.partial(_check_pair, num_classes=num_classes, ignore_label=ignore_label, root=root)
    if unchecked:
        logger.info(f"Checking {len(unchecked)} image/label pairs under {image_dir} and {label_dir} ...")
        logged = time.monotonic()
        try:
            with ThreadPool(min(8, os.cpu_count() or 1)) as pool:
                # In order, one pair a task: when a bad file stops the check, the pairs before it are recorded.
                for done, (pair, size) in enumerate(zip(unchecked, pool.imap(check, unchecked)), 1):
                    sizes[pair] = size
                    record.add(pair, stamps[pair], size)
                    if time.monotonic() - logged >= PROGRESS_SECONDS:
                        logger.info(f"Checked {done}/{len(unchecked)} pairs under {label_dir}")
                        logged = time.monotonic()
        finally:
            record.save()
    logger.info(
        f"Checked {len(unchecked)} image/label pairs under {image_dir} and {label_dir}"
        + (f"; {len(pairs) - len(unchecked)} unchanged since their check ({record_file})" if record_file else "")
    )
    return [
        {"file_name": image, "sem_seg_file_name": label, "height": sizes[image, label][0], "width": sizes[image, label][1]}
        for image, label in pairs
    ]


def _stamp(pair):
    """(size, modification time in ns) of each file of an image/label pair."""
    stamp = []
    for path in pair:
        stat = os.stat(path)
        stamp += [stat.st_size, stat.st_mtime_ns]
    return stamp


class CheckRecord:
    """The pairs whose check passed, as a JSON file: ``{"num_classes",
    "ignore_label", "pairs": {label: [image, stamp, height, width]}}``. A
    record made for another class count or ignore label counts for nothing."""

    def __init__(self, path, num_classes, ignore_label):
        self.path = path
        self.settings = {"num_classes": num_classes, "ignore_label": ignore_label}
        self.pairs = {}
        if path and os.path.isfile(path):
            try:
                with open(path) as f:
                    saved = json.load(f)
            except (OSError, ValueError) as e:
                logger.warning(f"{path}: unreadable record of checked labels, checking again ({e})")
                return
            if {key: saved.get(key) for key in self.settings} == self.settings:
                self.pairs = saved.get("pairs", {})

    def size(self, pair, stamp):
        """(height, width) of a pair checked with this stamp, else None."""
        image, label = pair
        entry = self.pairs.get(label)
        if entry and entry[0] == image and entry[1] == stamp:
            return tuple(entry[2:])
        return None

    def add(self, pair, stamp, size):
        image, label = pair
        self.pairs[label] = [image, stamp, *size]

    def save(self):
        """Write the record (atomically: several processes may load at once)."""
        if not self.path:
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_atomically(self.path, "w", lambda f: json.dump({**self.settings, "pairs": self.pairs}, f))
        except OSError as e:
            logger.warning(f"{self.path}: cannot record the checked labels ({e}); the next load checks them again")


def _check_pair(pair, **kwargs):
    """The pair's (height, width) if it passes check_label."""
    try:
        return check_label(*pair, **kwargs)
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for missing, empty or broken files
        raise InputError(f"{pair[0]} or {pair[1]}: cannot read it ({e})") from e


def read_classes_file(path):
    """(classes, colors or None, ignore_label) from a ``classes.yaml``."""
    if not os.path.isfile(path):
        raise MissingInputError(
            f"No class list: write {path} (classes: [name, ...], optional colors and ignore_label) "
            "or set DATASETS.CUSTOM.CLASSES"
        )
    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("classes"), list) or not spec["classes"]:
        raise InputError(f"{path}: needs a non-empty list `classes: [name, ...]`")
    unknown = set(spec) - {"classes", "colors", "ignore_label"}
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)}; the keys are classes, colors, ignore_label")
    return [str(c) for c in spec["classes"]], spec.get("colors"), spec.get("ignore_label", 255)


def folder_metadata(classes, colors, ignore_label, source):
    """Checked metadata of a folder dataset; ``source`` (the classes file or
    the config keys) is named in errors."""
    if colors:
        if len(colors) != len(classes):
            raise InputError(f"{source}: {len(colors)} colors for {len(classes)} classes; give one [R, G, B] per class")
        for color in colors:
            if len(color) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in color):
                raise InputError(f"{source}: colour {color} is not [R, G, B] with integers 0..255")
        if len({tuple(c) for c in colors}) != len(colors):
            raise InputError(f"{source}: two classes share a colour; colours must tell classes apart")
    if not isinstance(ignore_label, int) or not 0 <= ignore_label <= 255:
        raise InputError(f"{source}: ignore_label must be an integer 0..255, got {ignore_label!r}")
    if ignore_label < len(classes):
        raise InputError(f"{source}: ignore_label {ignore_label} is also a class id; use 255")
    return sem_seg_metadata(classes, colors, ignore_label, classes_file=source)


def register_folder_sem_seg(root, name=None, classes=None, colors=None, ignore_label=255, output_dir=None):
    """Register ``<name>_sem_seg_<split>`` for each ``root/images/<split>``;
    the classes come from the arguments, else ``root/classes.yaml``. With
    ``output_dir``, loading records what it checked under
    ``output_dir/checked_labels/``. Returns the registered names."""
    root = os.path.abspath(os.path.expanduser(root))
    name = name or os.path.basename(root)
    image_root = os.path.join(root, "images")
    if not os.path.isdir(image_root):
        raise MissingInputError(f"Dataset root {root} has no images/ folder: see datasets/README.md, 'Your own data'")
    splits = sorted(d for d in os.listdir(image_root) if os.path.isdir(os.path.join(image_root, d)))
    if not splits:
        raise MissingInputError(f"{image_root} has no split folders: put the images in images/train, images/val")
    if classes:
        meta = folder_metadata(classes, colors, ignore_label, "DATASETS.CUSTOM")
    else:
        classes_file = os.path.join(root, CLASSES_FILE)
        meta = folder_metadata(*read_classes_file(classes_file), classes_file)
    names = []
    for split in splits:
        dataset = f"{name}_sem_seg_{split}"
        image_dir, label_dir = os.path.join(image_root, split), os.path.join(root, "labels", split)
        record_file = os.path.join(output_dir, "checked_labels", f"{dataset}.json") if output_dir else None
        load = functools.partial(
            load_sem_seg_folder, image_dir, label_dir, len(meta["stuff_classes"]), meta["ignore_label"], root, record_file
        )
        register_sem_seg(dataset, load, image_root=image_dir, sem_seg_root=label_dir, **meta)
        names.append(dataset)
    return names


def register_custom_dataset(cfg):
    """Register the folder dataset of ``DATASETS.CUSTOM`` (nothing when its ROOT is empty)."""
    custom = cfg.DATASETS.CUSTOM
    if not custom.ROOT:
        return []
    return register_folder_sem_seg(
        custom.ROOT,
        custom.NAME,
        list(custom.CLASSES),
        [list(c) for c in custom.COLORS],
        custom.IGNORE_LABEL,
        output_dir=cfg.OUTPUT_DIR,
    )
