"""Class metadata shared by the dataset registrations, the check that the
configured datasets and the model agree on their classes, and the names and
colours the tools draw them with."""
import difflib

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...errors import InputError


def pascal_palette(num_classes):
    """The PASCAL VOC colour map (each class id's bits spread over R, G and B,
    from the high bit down): VOC's official colours, and distinct colours for
    any dataset that brings none."""
    colors = []
    for class_id in range(num_classes):
        r = g = b = 0
        for shift in range(7, -1, -1):
            r |= ((class_id >> 0) & 1) << shift
            g |= ((class_id >> 1) & 1) << shift
            b |= ((class_id >> 2) & 1) << shift
            class_id >>= 3
        colors.append([r, g, b])
    return colors


def sem_seg_metadata(classes, colors=None, ignore_label=255, **extra):
    """detectron2's semantic segmentation metadata: ``stuff_classes``,
    ``stuff_colors`` (the PASCAL palette when not given), ``ignore_label``,
    ``evaluator_type "sem_seg"``."""
    return dict(
        stuff_classes=list(classes),
        stuff_colors=[list(c) for c in colors] if colors else pascal_palette(len(classes)),
        ignore_label=ignore_label,
        evaluator_type="sem_seg",
        **extra,
    )


def check_datasets_fit_model(cfg):
    """Raise an InputError naming the key when a dataset of DATASETS.TRAIN/TEST
    is not registered, or its classes or ignore label differ from
    MODEL.SEM_SEG_HEAD.NUM_CLASSES / IGNORE_VALUE."""
    head = cfg.MODEL.SEM_SEG_HEAD
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name not in DatasetCatalog.list():
                close = difflib.get_close_matches(name, DatasetCatalog.list(), n=3)
                hint = f"did you mean {', '.join(close)}?" if close else "see datasets/README.md"
                raise InputError(f"DATASETS.{key}: dataset {name!r} is not registered; {hint}")
            meta = MetadataCatalog.get(name)
            classes = getattr(meta, "stuff_classes", None)
            where = f" ({meta.classes_file})" if hasattr(meta, "classes_file") else ""
            if classes is not None and len(classes) != head.NUM_CLASSES:
                raise InputError(
                    f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {head.NUM_CLASSES} but dataset {name!r} has "
                    f"{len(classes)} classes{where}: set MODEL.SEM_SEG_HEAD.NUM_CLASSES {len(classes)}"
                )
            ignore_label = getattr(meta, "ignore_label", None)
            if ignore_label is not None and ignore_label != head.IGNORE_VALUE:
                raise InputError(
                    f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE is {head.IGNORE_VALUE} but dataset {name!r} ignores "
                    f"label {ignore_label}{where}: set MODEL.SEM_SEG_HEAD.IGNORE_VALUE {ignore_label}"
                )


def class_names_and_colors(cfg):
    """Names and RGB colours ([K, 3] uint8) of the model's classes, from the
    metadata of the config's dataset (DATASETS.TEST[0], else DATASETS.TRAIN[0]);
    without metadata, "class <id>" in the PASCAL palette. Raises an InputError
    when the dataset's class count differs from MODEL.SEM_SEG_HEAD.NUM_CLASSES."""
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
