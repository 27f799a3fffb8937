"""PASCAL Context, the 59 most frequent classes (background ignored), as in
the DANet paper (52.6 mIoU).

``datasets/prepare_pascal_context.py`` converts the official release
(``trainval.tar.gz``: one ``.mat`` of 459-class ids per image) with the
train/val split of ``trainval_merged.json`` into
``VOC2010/SegmentationClassContext59`` (ids 0..58, 255 elsewhere) and
``VOC2010/ImageSets/SegmentationContext/{train,val}.txt`` (4,998 and 5,105
images). Registered as ``pascal_context_59_sem_seg_{train,val}``.
"""
import functools
import os

from .loaders import load_sem_seg_list, register_sem_seg
from .metadata import sem_seg_metadata

# The 59 classes: their ids in the release's 459-class labels.txt, and names.
CONTEXT_59 = [
    (2, "aeroplane"), (9, "bag"), (18, "bed"), (19, "bedclothes"), (22, "bench"), (23, "bicycle"), (25, "bird"),
    (31, "boat"), (33, "book"), (34, "bottle"), (44, "building"), (45, "bus"), (46, "cabinet"), (59, "car"),
    (65, "cat"), (68, "ceiling"), (72, "chair"), (80, "cloth"), (85, "computer"), (98, "cow"), (104, "cup"),
    (105, "curtain"), (113, "dog"), (115, "door"), (144, "fence"), (158, "floor"), (159, "flower"), (162, "food"),
    (187, "grass"), (189, "ground"), (207, "horse"), (220, "keyboard"), (232, "light"), (258, "motorbike"),
    (259, "mountain"), (260, "mouse"), (284, "person"), (295, "plate"), (296, "platform"), (308, "pottedplant"),
    (324, "road"), (326, "rock"), (347, "sheep"), (349, "shelves"), (354, "sidewalk"), (355, "sign"), (360, "sky"),
    (366, "snow"), (368, "sofa"), (397, "table"), (415, "track"), (416, "train"), (420, "tree"), (424, "truck"),
    (427, "tvmonitor"), (440, "wall"), (445, "water"), (454, "window"), (458, "wood"),
]  # fmt: skip
CONTEXT_59_CLASSES = [name for _, name in CONTEXT_59]
PREPARE = "python datasets/prepare_pascal_context.py --root {root}"
SPLITS = ("train", "val")


def register_pascal_context_sem_seg(name, root, split):
    """Register the ids of ``root/ImageSets/SegmentationContext/<split>.txt``
    (root is ``VOCdevkit/VOC2010``) as dataset ``name``."""
    list_file = os.path.join(root, "ImageSets", "SegmentationContext", f"{split}.txt")
    image_dir = os.path.join(root, "JPEGImages")
    label_dir = os.path.join(root, "SegmentationClassContext59")
    load = functools.partial(load_sem_seg_list, list_file, image_dir, label_dir, prepare=PREPARE.format(root=root))
    register_sem_seg(name, load, image_root=image_dir, sem_seg_root=label_dir, **sem_seg_metadata(CONTEXT_59_CLASSES))


def register_all_pascal_context(datasets_root):
    root = os.path.join(datasets_root, "VOCdevkit", "VOC2010")
    for split in SPLITS:
        register_pascal_context_sem_seg(f"pascal_context_59_sem_seg_{split}", root, split)
