"""The augmentations configured by ``INPUT.*``.

Training, in mmsegmentation's order: resize, a crop that no single class
dominates, flip, photometric distortion, then padding to the crop size (mmseg
pads last, in its data preprocessor). Test: one resize to the test size.
mmseg's training scale and the test resize use OpenCV as mmcv does
(:mod:`danet.data.resize`); ``RESIZE_TYPE "shortest_edge"`` is detectron2's
(PIL, as the DANet authors resize).
"""
from detectron2.data import transforms as T

from ..errors import InputError
from .crop import PadToSize, RandomCropCategoryRatio
from .photometric_distortion import PhotoMetricDistortion
from .resize import RandomRescale, Rescale, scale_pair


def build_resize(cfg):
    """The training resize of ``INPUT.RESIZE_TYPE``: detectron2's ResizeShortestEdge,
    or mmseg's RandomResize by ``INPUT.SCALE`` (its values checked)."""
    if cfg.INPUT.RESIZE_TYPE == "shortest_edge":
        return T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    if cfg.INPUT.RESIZE_TYPE == "scale":
        if cfg.INPUT.SCALE.BASE_SIZE is None:
            raise InputError(
                "INPUT.RESIZE_TYPE 'scale' needs INPUT.SCALE.BASE_SIZE: an int (the long side) "
                "or a pair (long, short) such as (2048, 512)"
            )
        scale = scale_pair(cfg.INPUT.SCALE.BASE_SIZE, "INPUT.SCALE.BASE_SIZE")
        scale_range = tuple(cfg.INPUT.SCALE.RANGE)
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise InputError(f"INPUT.SCALE.RANGE must be (low, high) with 0 < low <= high, got {scale_range}")
        return RandomRescale(scale, scale_range)
    raise InputError(f"INPUT.RESIZE_TYPE must be 'shortest_edge' or 'scale', got {cfg.INPUT.RESIZE_TYPE!r}")


def build_photometric_distortion(cfg):
    """mmseg's PhotoMetricDistortion from ``INPUT.PHOTOMETRIC_DISTORTION``, its ranges checked first."""
    distortion = cfg.INPUT.PHOTOMETRIC_DISTORTION
    key = "INPUT.PHOTOMETRIC_DISTORTION"
    for name in ("CONTRAST_RANGE", "SATURATION_RANGE"):
        value = tuple(distortion[name])
        if len(value) != 2 or not 0 <= value[0] <= value[1]:
            raise InputError(f"{key}.{name} must be (low, high) with 0 <= low <= high, got {value}")
    if not distortion.BRIGHTNESS_DELTA >= 0:
        raise InputError(f"{key}.BRIGHTNESS_DELTA must be >= 0, got {distortion.BRIGHTNESS_DELTA}")
    if not 1 <= distortion.HUE_DELTA <= 90:
        # mmseg draws the shift with randint(-HUE_DELTA, HUE_DELTA), which needs 1 or more.
        raise InputError(f"{key}.HUE_DELTA must be an int from 1 to 90, got {distortion.HUE_DELTA}")
    return PhotoMetricDistortion(
        cfg.INPUT.FORMAT,
        brightness_delta=distortion.BRIGHTNESS_DELTA,
        contrast_range=tuple(distortion.CONTRAST_RANGE),
        saturation_range=tuple(distortion.SATURATION_RANGE),
        hue_delta=distortion.HUE_DELTA,
    )


def build_train_augmentation(cfg):
    """Resize, crop that no single class dominates, flip, photometric
    distortion, padding to the crop size (image: pixel mean; label: ignore value)."""
    augs = [build_resize(cfg)]
    crop = cfg.INPUT.CROP
    if crop.ENABLED:
        if crop.TYPE != "absolute":
            raise InputError(
                f"INPUT.CROP.TYPE must be 'absolute' for semantic segmentation (a fixed crop size "
                f"to pad to), got {crop.TYPE!r}"
            )
        ignore_value = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        augs.append(RandomCropCategoryRatio(crop.SIZE, crop.SINGLE_CATEGORY_MAX_AREA, ignore_value))
    flip = cfg.INPUT.RANDOM_FLIP
    if flip not in ("horizontal", "vertical", "none"):
        raise InputError(f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {flip!r}")
    if flip != "none":
        # One np.random.uniform() < 0.5 per image, the draw of mmcv's RandomFlip(prob=0.5).
        augs.append(T.RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
    if cfg.INPUT.PHOTOMETRIC_DISTORTION.ENABLED:
        augs.append(build_photometric_distortion(cfg))
    if crop.ENABLED:
        augs.append(PadToSize(crop.SIZE, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE))
    return augs


def build_test_augmentation(cfg):
    """The test loader's resize, also ``SegmentationPredictor``'s: the short
    side to ``INPUT.MIN_SIZE_TEST`` with the long side at most
    ``INPUT.MAX_SIZE_TEST`` (detectron2's meaning; mmseg's
    ``Resize(scale=(MAX, MIN), keep_ratio=True)``), with OpenCV; none when
    ``MIN_SIZE_TEST`` is 0."""
    if cfg.INPUT.MIN_SIZE_TEST and cfg.INPUT.MAX_SIZE_TEST < cfg.INPUT.MIN_SIZE_TEST:
        # mmseg's bounds and detectron2's resize agree only when the long side's bound is the larger.
        raise InputError(
            f"INPUT.MAX_SIZE_TEST {cfg.INPUT.MAX_SIZE_TEST} is below INPUT.MIN_SIZE_TEST {cfg.INPUT.MIN_SIZE_TEST}: "
            "give the long side's bound at least the short side's"
        )
    return [Rescale((cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST))]
