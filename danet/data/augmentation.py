"""The training augmentation configured by ``INPUT.*``: resize, a crop that no
single class dominates, padding to the crop, flip and colour jitter."""
from detectron2.data import transforms as T

from ..errors import InputError


def build_resize(cfg):
    if cfg.INPUT.RESIZE_TYPE == "shortest_edge":
        return T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    if cfg.INPUT.RESIZE_TYPE == "scale":
        low, high = cfg.INPUT.SCALE.RANGE
        size = cfg.INPUT.SCALE.BASE_SIZE
        # A square target makes the long side BASE_SIZE * ratio, whatever the aspect ratio.
        return T.ResizeScale(low, high, size, size)
    raise InputError(f"INPUT.RESIZE_TYPE must be 'shortest_edge' or 'scale', got {cfg.INPUT.RESIZE_TYPE!r}")


def build_train_augmentation(cfg):
    """Resize, crop that no single class dominates, padding to the crop, flip, colour jitter."""
    ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    augs = [build_resize(cfg)]
    if cfg.INPUT.CROP.ENABLED:
        if cfg.INPUT.CROP.TYPE != "absolute":
            raise InputError(
                f"INPUT.CROP.TYPE must be 'absolute' for semantic segmentation (a fixed crop size "
                f"to pad to), got {cfg.INPUT.CROP.TYPE!r}"
            )
        crop_h, crop_w = cfg.INPUT.CROP.SIZE
        augs += [
            T.RandomCrop_CategoryAreaConstraint(
                "absolute", (crop_h, crop_w), cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA, ignore_value
            ),
            # The crop is never larger than the crop size; this pads the bottom and
            # right up to it (as the DANet authors do), the label with the ignore value.
            T.FixedSizeCrop((crop_h, crop_w), pad=True, pad_value=0, seg_pad_value=ignore_value),
        ]
    flip = cfg.INPUT.RANDOM_FLIP
    if flip not in ("horizontal", "vertical", "none"):
        raise InputError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}")
    if flip != "none":
        augs.append(T.RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
    jitter = cfg.INPUT.COLOR_AUG
    if jitter.ENABLED:
        augs += [
            T.RandomBrightness(*jitter.BRIGHTNESS),
            T.RandomContrast(*jitter.CONTRAST),
            T.RandomSaturation(*jitter.SATURATION),
        ]
    return augs
