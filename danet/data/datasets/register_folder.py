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
"""
import functools
import logging
import os
from multiprocessing.pool import ThreadPool

import numpy as np
import yaml
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...errors import InputError, MissingInputError
from .metadata import sem_seg_metadata

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CLASSES_FILE = "classes.yaml"
CONVERT = "python datasets/convert_color_labels.py --root {root}"


def _files_by_stem(folder, extensions):
    """{relative path without extension: path} of the files under ``folder``."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() in extensions:
                path = os.path.join(parent, name)
                key = os.path.join(os.path.relpath(parent, folder), stem)
                if key in found:
                    raise InputError(f"{path} and {found[key]} have the same stem: keep one of them")
                found[key] = path
    return found


def pair_images_with_labels(image_dir, label_dir, label_extensions=(".png",)):
    """[(image, label)] sorted by path; an image without a label, or a label
    without an image, raises an InputError naming it."""
    for folder in (image_dir, label_dir):
        if not os.path.isdir(folder):
            raise MissingInputError(f"Dataset folder {folder} does not exist")
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
    labels = _files_by_stem(label_dir, label_extensions)
    if not images:
        raise MissingInputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {image_dir}")
    for key in sorted(images):
        if key not in labels:
            raise InputError(
                f"{images[key]} has no label: expected {os.path.join(label_dir, key)}{label_extensions[0]}"
            )
    for key in sorted(labels):
        if key not in images:
            raise InputError(f"{labels[key]} has no image with the same stem under {image_dir}")
    return [(images[key], labels[key]) for key in sorted(images)]


def check_label(image_file, label_file, num_classes, ignore_label, root):
    """Raise an InputError naming ``label_file`` if it is an RGB colour
    picture, differs in size from its image, or holds ids that are neither a
    class nor the ignore label; return the image's (height, width)."""
    with Image.open(image_file) as image, Image.open(label_file) as label:
        if label.mode in ("RGB", "RGBA", "LA"):
            raise InputError(
                f"{label_file}: an {label.mode} colour picture, but labels hold one class id per pixel; "
                f"convert colour labels with `{CONVERT.format(root=root)}` (uses the colours of {CLASSES_FILE})"
            )
        if label.size != image.size:
            raise InputError(
                f"{label_file}: label is {label.size[0]}x{label.size[1]} but its image {image_file} "
                f"is {image.size[0]}x{image.size[1]}"
            )
        ids = np.unique(np.asarray(label))
        width, height = image.size
    bad = ids[(ids >= num_classes) & (ids != ignore_label)]
    if bad.size:
        raise InputError(
            f"{label_file}: ids {bad[:5].tolist()} are beyond the {num_classes} classes (0..{num_classes - 1}) "
            f"and the ignore label {ignore_label}: fix the file or the class list"
        )
    return height, width


def load_sem_seg_folder(image_dir, label_dir, num_classes, ignore_label, root, check_labels=True):
    """detectron2 dataset dicts of image/label pairs, checked as a whole.

    With ``check_labels`` every label is read (in threads) for colour
    pictures, sizes and ids; without it only the pairing is checked and the
    data mapper checks each sample as it is used.
    """
    pairs = pair_images_with_labels(image_dir, label_dir)
    if not check_labels:
        return [{"file_name": image, "sem_seg_file_name": label} for image, label in pairs]
    check = functools.partial(_check_pair, num_classes=num_classes, ignore_label=ignore_label, root=root)
    with ThreadPool(min(8, os.cpu_count() or 1)) as pool:
        sizes = pool.map(check, pairs, chunksize=16)
    logger.info(f"Checked {len(pairs)} image/label pairs under {image_dir} and {label_dir}")
    return [
        {"file_name": image, "sem_seg_file_name": label, "height": height, "width": width}
        for (image, label), (height, width) in zip(pairs, sizes)
    ]


def _check_pair(pair, **kwargs):
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


def register_folder_sem_seg(root, name=None, classes=None, colors=None, ignore_label=255, check_labels=True):
    """Register ``<name>_sem_seg_<split>`` for each ``root/images/<split>``;
    the classes come from the arguments, else ``root/classes.yaml``. Returns
    the registered names."""
    root = os.path.abspath(os.path.expanduser(root))
    name = name or os.path.basename(root)
    image_root = os.path.join(root, "images")
    if not os.path.isdir(image_root):
        raise MissingInputError(f"Dataset root {root} has no images/ folder: see README, Your own data")
    splits = sorted(d for d in os.listdir(image_root) if os.path.isdir(os.path.join(image_root, d)))
    if not splits:
        raise MissingInputError(f"{image_root} has no split folders: put the images in images/train, images/val")
    if classes:
        meta = folder_metadata(classes, colors, ignore_label, "DATASETS.CUSTOM.CLASSES")
    else:
        classes_file = os.path.join(root, CLASSES_FILE)
        meta = folder_metadata(*read_classes_file(classes_file), classes_file)
    names = []
    for split in splits:
        dataset = f"{name}_sem_seg_{split}"
        image_dir, label_dir = os.path.join(image_root, split), os.path.join(root, "labels", split)
        if dataset in DatasetCatalog.list():
            DatasetCatalog.remove(dataset)
            MetadataCatalog.remove(dataset)
        load = functools.partial(
            load_sem_seg_folder, image_dir, label_dir, len(meta["stuff_classes"]), meta["ignore_label"], root,
            check_labels=check_labels,
        )  # fmt: skip
        DatasetCatalog.register(dataset, load)
        MetadataCatalog.get(dataset).set(image_root=image_dir, sem_seg_root=label_dir, **meta)
        names.append(dataset)
    return names


def register_custom_dataset(cfg):
    """Register the folder dataset of ``DATASETS.CUSTOM`` (nothing when its ROOT is empty)."""
    custom = cfg.DATASETS.CUSTOM
    if not custom.ROOT:
        return []
    return register_folder_sem_seg(
        custom.ROOT, custom.NAME, list(custom.CLASSES), [list(c) for c in custom.COLORS], custom.IGNORE_LABEL
    )
