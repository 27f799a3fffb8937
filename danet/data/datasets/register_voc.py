"""PASCAL VOC 2012 semantic segmentation (21 classes with background, 255 on
object boundaries), with the SBD-augmented training set of the papers.

``datasets/prepare_voc.py`` writes ``VOC2012/SegmentationClassAug`` (VOC's
labels as class ids, and SBD's ``.mat`` labels for the images VOC does not
annotate) and ``ImageSets/Segmentation/train_aug.txt`` (10,582 images: VOC
train and SBD train+val, without VOC val). Registered as
``voc_2012_sem_seg_{train_aug,train,val}``.
"""
import functools
import os

from .loaders import load_sem_seg_list, register_sem_seg
from .metadata import pascal_palette, sem_seg_metadata

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
PREPARE = "python datasets/prepare_voc.py --root {root}"
SPLITS = ("train_aug", "train", "val")


def register_voc_sem_seg(name, root, split):
    """Register the ids of ``root/ImageSets/Segmentation/<split>.txt`` (root is
    ``VOCdevkit/VOC2012``) as dataset ``name``."""
    list_file = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
    image_dir = os.path.join(root, "JPEGImages")
    label_dir = os.path.join(root, "SegmentationClassAug")
    load = functools.partial(load_sem_seg_list, list_file, image_dir, label_dir, prepare=PREPARE.format(root=root))
    # VOC's own colour map: the PASCAL palette.
    meta = sem_seg_metadata(VOC_CLASSES, pascal_palette(len(VOC_CLASSES)))
    register_sem_seg(name, load, image_root=image_dir, sem_seg_root=label_dir, **meta)


def register_all_voc(datasets_root):
    for split in SPLITS:
        register_voc_sem_seg(f"voc_2012_sem_seg_{split}", os.path.join(datasets_root, "VOCdevkit", "VOC2012"), split)
