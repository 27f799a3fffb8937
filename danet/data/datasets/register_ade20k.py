"""ADE20K (SceneParsing, 150 classes).

detectron2 registers ``ade20k_sem_seg_{train,val}`` reading
``$DETECTRON2_DATASETS/ADEChallengeData2016/annotations_detectron2`` (labels
shifted down by one, "other" becoming the ignore label 255), which
``datasets/prepare_ade20k.py`` makes. The same names are registered again here
with detectron2's classes, a loader that checks every image has its label
before training, and colours for the pictures.
"""
import functools
import os

from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

from .loaders import load_sem_seg_pairs, register_sem_seg
from .metadata import sem_seg_metadata

PREPARE = "python datasets/prepare_ade20k.py --root {root}"
SPLITS = {"train": "training", "val": "validation"}


def register_ade20k_sem_seg(name, root, split):
    """Register ``root/images/<split>`` with ``root/annotations_detectron2/<split>``
    (split "training" or "validation") as dataset ``name``."""
    image_dir = os.path.join(root, "images", split)
    label_dir = os.path.join(root, "annotations_detectron2", split)
    load = functools.partial(load_sem_seg_pairs, image_dir, label_dir, PREPARE.format(root=root))
    register_sem_seg(
        name, load, image_root=image_dir, sem_seg_root=label_dir, **sem_seg_metadata(ADE20K_SEM_SEG_CATEGORIES)
    )


def register_all_ade20k(datasets_root):
    for name, split in SPLITS.items():
        register_ade20k_sem_seg(f"ade20k_sem_seg_{name}", os.path.join(datasets_root, "ADEChallengeData2016"), split)
