"""Cityscapes-layout semantic segmentation datasets.

detectron2 registers ``cityscapes_fine_sem_seg_{train,val,test}`` under
``$DETECTRON2_DATASETS/cityscapes``; :func:`register_cityscapes_sem_seg` registers
the same kind of dataset for any other root, which is how the generated
``toy_cityscapes_fine_sem_seg_{train,val}`` (under ``$DETECTRON2_DATASETS/toy_cityscapes``)
are made available.
"""
import functools
import glob
import os

from cityscapesscripts.helpers.labels import trainId2label
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic

from ...errors import MissingInputError

PREPARE = "run `python datasets/prepare_cityscapes.py --root <root>` (root defaults to $DETECTRON2_DATASETS/cityscapes)"


def load_cityscapes_sem_seg(image_dir, gt_dir):
    """detectron2's ``load_cityscapes_semantic``, with errors that say how to fix the data.

    detectron2 only checks the first labelTrainIds file and asserts with a hint
    about cityscapesScripts; here every missing file is found before training starts.
    """
    for folder in (image_dir, gt_dir):
        if not os.path.isdir(folder):
            raise MissingInputError(
                f"Cityscapes folder {folder} does not exist: set DETECTRON2_DATASETS to the folder "
                "holding the dataset root, or register the dataset with the right root"
            )
    json_files = glob.glob(os.path.join(gt_dir, "*", "*_gtFine_polygons.json"))
    if not json_files:
        raise MissingInputError(f"No *_gtFine_polygons.json files in {gt_dir}/<city>/: not a Cityscapes gtFine split")
    missing = [f.replace("_polygons.json", "_labelTrainIds.png") for f in json_files]
    missing = [f for f in missing if not os.path.isfile(f)]
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(json_files)} *_gtFine_labelTrainIds.png files missing under {gt_dir} "
            f"(e.g. {missing[0]}): {PREPARE}"
        )
    return load_cityscapes_semantic(image_dir, gt_dir)


def cityscapes_sem_seg_metadata():
    """detectron2's Cityscapes classes with the official colours of cityscapesScripts."""
    meta = _get_builtin_metadata("cityscapes")
    colors = [list(trainId2label[i].color) for i in range(len(meta["stuff_classes"]))]
    return dict(stuff_classes=meta["stuff_classes"], stuff_colors=colors, ignore_label=255)


def register_cityscapes_sem_seg(name, root, split):
    """Register ``root/leftImg8bit/<split>`` with ``root/gtFine/<split>`` as sem-seg dataset ``name``."""
    image_dir = os.path.join(root, "leftImg8bit", split)
    gt_dir = os.path.join(root, "gtFine", split)
    DatasetCatalog.register(name, functools.partial(load_cityscapes_sem_seg, image_dir, gt_dir))
    MetadataCatalog.get(name).set(
        image_dir=image_dir, gt_dir=gt_dir, evaluator_type="sem_seg", **cityscapes_sem_seg_metadata()
    )


def _use_checked_loader_for_builtin_cityscapes():
    """Point detectron2's own Cityscapes sem-seg splits at the loader above, keeping their metadata."""
    for split in ("train", "val", "test"):
        name = f"cityscapes_fine_sem_seg_{split}"
        meta = MetadataCatalog.get(name)
        DatasetCatalog.remove(name)
        DatasetCatalog.register(name, functools.partial(load_cityscapes_sem_seg, meta.image_dir, meta.gt_dir))
        if not hasattr(meta, "stuff_colors"):
            meta.stuff_colors = cityscapes_sem_seg_metadata()["stuff_colors"]


_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
_use_checked_loader_for_builtin_cityscapes()
for _split in ("train", "val"):
    register_cityscapes_sem_seg(f"toy_cityscapes_fine_sem_seg_{_split}", os.path.join(_root, "toy_cityscapes"), _split)
