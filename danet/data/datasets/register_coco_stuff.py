"""COCO-Stuff-164k: 171 classes (80 things and 91 stuff) on COCO 2017 images.

``stuffthingmaps_trainval2017.zip`` holds one PNG per image with COCO's
category id minus one (0..181, of which 11 thing ids are unused, 255
unlabelled); ``datasets/prepare_coco_stuff.py`` maps them to contiguous ids
0..170 in ``coco/stuffthingmaps_detectron2/{train2017,val2017}``. Registered as
``coco_2017_{train,val}_stuff_sem_seg``.
"""
import functools
import os

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .loaders import load_sem_seg_pairs, register_sem_seg
from .metadata import pascal_palette, sem_seg_metadata

# The 91 stuff classes of COCO-Stuff, category ids 92..182 in this order.
COCO_STUFF_NAMES = [
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]  # fmt: skip
_THINGS = [c for c in COCO_CATEGORIES if c["isthing"]]
# Pixel value in stuffthingmaps (category id - 1) of each of the 171 classes, in order.
COCO_STUFF_MAP_VALUES = [c["id"] - 1 for c in _THINGS] + list(range(91, 182))
COCO_STUFF_CLASSES = [c["name"] for c in _THINGS] + COCO_STUFF_NAMES
PREPARE = "python datasets/prepare_coco_stuff.py --root {root}"
SPLITS = ("train2017", "val2017")


def register_coco_stuff_sem_seg(name, root, split):
    """Register ``root/<split>`` with ``root/stuffthingmaps_detectron2/<split>``
    (root is the ``coco`` folder) as dataset ``name``."""
    image_dir = os.path.join(root, split)
    label_dir = os.path.join(root, "stuffthingmaps_detectron2", split)
    load = functools.partial(load_sem_seg_pairs, image_dir, label_dir, PREPARE.format(root=root))
    colors = [c["color"] for c in _THINGS] + pascal_palette(len(COCO_STUFF_CLASSES))[len(_THINGS) :]
    meta = sem_seg_metadata(COCO_STUFF_CLASSES, colors)
    register_sem_seg(name, load, image_root=image_dir, sem_seg_root=label_dir, **meta)


def register_all_coco_stuff(datasets_root):
    for split in SPLITS:
        register_coco_stuff_sem_seg(f"coco_2017_{split[:-4]}_stuff_sem_seg", os.path.join(datasets_root, "coco"), split)
