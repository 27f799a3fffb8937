"""Training-time data pipeline for semantic segmentation."""
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T


def build_train_augmentation(cfg):
    """Multi-scale resize, crop that no single class dominates, horizontal flip."""
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            )
        )
    augs.append(T.RandomFlip())
    return augs


def build_train_mapper(cfg):
    return DatasetMapper(cfg, is_train=True, augmentations=build_train_augmentation(cfg))
