"""The data pipeline against mmsegmentation 1.2.2's own transforms (from
.reference, a test oracle), driven by the same random draws.

mmseg's transforms and this project's augmentations all draw from numpy's
global generator, in the same order: each comparison seeds it, runs one side,
seeds it again and runs the other, then also checks that both left the
generator in the same state (so the next transform of a pipeline draws the
same values). Images are generated with ignored pixels, odd sizes and aspect
ratios other than 2:1; labels must be equal, images too (no rounding forces a
tolerance anywhere).
"""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import REPO, tiny_cfg
from mmseg_reference import mmseg  # noqa: F401  (the fixture importing mmseg from .reference)
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from danet.data import build_test_mapper, build_train_augmentation, build_train_mapper
from danet.data.crop import RandomCropCategoryRatio
from danet.data.photometric_distortion import PhotoMetricDistortion
from danet.data.resize import RandomRescale
from danet.engine import SegmentationPredictor
from danet.errors import InputError
from danet.modeling import SemanticSegmentorWithTTA

MMSEG_DATASET_CONFIGS = os.path.join(REPO, ".reference", "mmseg", ".mim", "configs", "_base_", "datasets")
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]


@pytest.fixture(scope="module")
def build(mmseg):  # noqa: F811
    """mmseg's transform from a config dict, as its pipelines build them."""
    from mmseg.registry import TRANSFORMS

    return TRANSFORMS.build


def natural_image(rng, height, width):
    """uint8 RGB [H, W, 3]: smooth colour gradients, texture, saturated and grey patches."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(2 * np.pi * (f * x + g * y) + p) for f, g, p in rng.uniform(0.5, 4, (3, 3))]
    image = 127.5 + 90 * np.stack(channels, -1) + rng.normal(0, 25, (height, width, 3))
    image[: height // 4, : width // 4] = [255, 0, 0]  # saturated
    image[-height // 5 :, -width // 5 :] = image[-height // 5 :, -width // 5 :].mean(-1, keepdims=True)  # grey
    return np.clip(image, 0, 255).astype(np.uint8)


def block_label(rng, height, width, classes=19, block=7, ignore_fraction=0.15):
    """uint8 [H, W] of random classes in ``block``-sized squares, some 255."""
    blocks = rng.integers(0, classes, (-(-height // block), -(-width // block)))
    blocks[rng.random(blocks.shape) < ignore_fraction] = 255
    return np.kron(blocks, np.ones((block, block), int))[:height, :width].astype(np.uint8)


def rng_state():
    _, keys, position, *_ = np.random.get_state()
    return keys.copy(), position


def run_seeded(seed, fn, *args):
    """``fn(*args)`` with numpy's global generator seeded, and the generator's state after."""
    np.random.seed(seed)
    out = fn(*args)
    return out, rng_state()


def assert_same_draws(state, other):
    np.testing.assert_array_equal(state[0], other[0])
    assert state[1] == other[1]


def mmseg_results(bgr_image, label=None):
    results = {"img": bgr_image.copy(), "img_shape": bgr_image.shape[:2], "ori_shape": bgr_image.shape[:2]}
    if label is not None:
        results.update(gt_seg_map=label.copy(), seg_fields=["gt_seg_map"])
    return results


def apply(augmentation, image, sem_seg=None):
    aug_input = T.AugInput(image.copy(), sem_seg=None if sem_seg is None else sem_seg.copy())
    transform = augmentation(aug_input)
    return aug_input.image, aug_input.sem_seg, transform


def assert_same_as_mmseg(reference, ours, rgb, label, seeds):
    """``ours`` (an augmentation of RGB images) and mmseg's ``reference`` (of BGR
    ones) give the same image, label and generator state for each seed; mmseg's results."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    results = []
    for seed in seeds:
        expected, expected_state = run_seeded(seed, lambda: reference(mmseg_results(bgr, label)))
        (image, sem_seg, _), state = run_seeded(seed, apply, ours, rgb, label)
        assert_same_draws(state, expected_state)
        np.testing.assert_array_equal(image[:, :, ::-1], expected["img"])
        np.testing.assert_array_equal(sem_seg, expected["gt_seg_map"])
        results.append(expected)
    return results


# ---------------------------------------------------------------------------
# Each transform on its own
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("image_format", ["RGB", "BGR"])
def test_photometric_distortion_equals_mmseg(build, image_format):
    """Same pixels for mmseg's BGR image and this project's image in INPUT.FORMAT,
    over enough seeds to run every step in both contrast positions."""
    rgb = natural_image(np.random.default_rng(0), 37, 53)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ours_input = rgb if image_format == "RGB" else bgr
    reference = build({"type": "PhotoMetricDistortion"})
    ours = PhotoMetricDistortion(image_format)
    seen = set()
    for seed in range(48):
        expected, expected_state = run_seeded(seed, lambda: reference(mmseg_results(bgr))["img"])
        (image, _, transform), state = run_seeded(seed, apply, ours, ours_input)
        assert_same_draws(state, expected_state)
        np.testing.assert_array_equal(image if image_format == "BGR" else image[:, :, ::-1], expected)
        assert image.dtype == np.uint8
        steps = ("brightness_delta", "contrast_alpha", "saturation_alpha", "hue_shift")
        seen |= {(transform.contrast_first, step) for step in steps if getattr(transform, step) is not None}
    assert len(seen) == 8  # each step applied, with contrast first and last


@pytest.mark.parametrize("scale", [(2048, 1024), (2048, 512), (96, 96)])
@pytest.mark.parametrize("size", [(75, 131), (131, 75), (64, 64)])
def test_random_rescale_equals_mmseg_random_resize(build, scale, size):
    rng = np.random.default_rng(1)
    rgb, label = natural_image(rng, *size), block_label(rng, *size)
    reference = build({"type": "RandomResize", "scale": scale, "ratio_range": (0.5, 2.0), "keep_ratio": True})
    assert_same_as_mmseg(reference, RandomRescale(scale, (0.5, 2.0)), rgb, label, range(6))


def crop_label(rng, size, kind):
    """"mixed": classes in blocks, most pixels one class, so that some windows
    are rejected; "single": one class and ignored pixels, so that every window
    is rejected (mmseg then keeps an 11th)."""
    if kind == "single":
        return np.where(rng.random(size) < 0.3, 255, 4).astype(np.uint8)
    return np.where(rng.random(size) < 0.6, 1, block_label(rng, *size)).astype(np.uint8)


@pytest.mark.parametrize(
    "size, crop_size, cat_max_ratio, kind",
    [
        ((97, 141), (48, 64), 0.75, "mixed"),
        ((97, 141), (48, 64), 0.75, "single"),
        ((41, 141), (48, 64), 0.75, "mixed"),  # shorter than the crop: kept whole
        ((97, 141), (48, 64), 1.0, "mixed"),  # no constraint: one window
    ],
)
def test_crop_equals_mmseg_random_crop(build, size, crop_size, cat_max_ratio, kind):
    rng = np.random.default_rng(2)
    rgb, label = natural_image(rng, *size), crop_label(rng, size, kind)
    reference = build({"type": "RandomCrop", "crop_size": crop_size, "cat_max_ratio": cat_max_ratio})
    ours = RandomCropCategoryRatio(crop_size, cat_max_ratio, ignore_value=255)
    for expected in assert_same_as_mmseg(reference, ours, rgb, label, range(12)):
        assert expected["gt_seg_map"].shape == tuple(min(c, s) for c, s in zip(crop_size, size))


def test_detectron2_flip_draws_as_mmseg_random_flip(build):
    """detectron2's RandomFlip (reused) flips exactly when mmcv's RandomFlip(prob=0.5) does."""
    rgb = natural_image(np.random.default_rng(3), 9, 14)
    label = block_label(np.random.default_rng(4), 9, 14, block=3)
    reference = build({"type": "RandomFlip", "prob": 0.5})
    flips = [r["flip"] for r in assert_same_as_mmseg(reference, T.RandomFlip(prob=0.5), rgb, label, range(16))]
    assert 0 < sum(flips) < len(flips)


# ---------------------------------------------------------------------------
# The whole training pipeline, normalisation and padding included
# ---------------------------------------------------------------------------
def write_sample(tmp_path, name, rgb, label):
    Image.fromarray(rgb).save(tmp_path / f"{name}.png")
    Image.fromarray(label).save(tmp_path / f"{name}_label.png")
    return {
        "file_name": str(tmp_path / f"{name}.png"), "sem_seg_file_name": str(tmp_path / f"{name}_label.png"),
        "height": rgb.shape[0], "width": rgb.shape[1],
    }  # fmt: skip


def mmseg_train_batch(mmseg_pipeline, records, label_files):
    """mmseg's train pipeline on each record, then SegDataPreProcessor: (inputs, labels)."""
    from mmcv.transforms import Compose
    from mmengine.config import Config
    from mmseg.models.data_preprocessor import SegDataPreProcessor

    config = Config.fromfile(os.path.join(MMSEG_DATASET_CONFIGS, f"{mmseg_pipeline}.py"))
    pipeline = Compose(config.train_pipeline)
    # ADE20KDataset reduces the zero label (0 "other" becomes 255, the classes 0..149).
    reduce_zero_label = mmseg_pipeline == "ade20k"
    samples = [
        pipeline({"img_path": r["file_name"], "seg_map_path": label, "reduce_zero_label": reduce_zero_label, "seg_fields": []})
        for r, label in zip(records, label_files)
    ]
    preprocessor = SegDataPreProcessor(
        mean=PIXEL_MEAN, std=PIXEL_STD, bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=config.crop_size
    )
    data = preprocessor({"inputs": [s["inputs"] for s in samples], "data_samples": [s["data_samples"] for s in samples]}, True)
    return data["inputs"], torch.stack([s.gt_sem_seg.data[0] for s in data["data_samples"]])


class Normalised(Exception):
    """Raised by a hook on the backbone to stop the forward once its input is known."""


def model_input(model, batch):
    """The normalised image batch the model's backbone receives in training."""
    captured = {}

    def capture(module, args):
        captured["images"] = args[0]
        raise Normalised

    handle = model.backbone.register_forward_pre_hook(capture)
    try:
        model(batch)
    except Normalised:
        pass
    finally:
        handle.remove()
    return captured["images"]


@pytest.mark.parametrize(
    "mmseg_pipeline, num_classes, scale, sizes",
    [
        # Cityscapes: RandomResize (2048, 1024), 512x1024 crops; an odd 1.6:1 frame,
        # and a 7:1 strip whose short side stays under the crop (padded).
        ("cityscapes", 19, (2048, 1024), [(101, 161), (33, 231)]),
        # ADE20K: RandomResize (2048, 512), 512x512 crops; padded whenever the ratio is below 1.
        ("ade20k", 150, (2048, 512), [(87, 113), (120, 91)]),
    ],
)
def test_train_pipeline_equals_mmseg(mmseg, tmp_path, mmseg_pipeline, num_classes, scale, sizes):  # noqa: F811
    """build_train_augmentation + the mapper + the model's normalisation against
    mmseg's train pipeline (its dataset config) + SegDataPreProcessor, for a
    batch of two images with the same draws: equal image tensors, padding
    included, and equal labels. ADE20K labels go through
    datasets/prepare_ade20k.py for this project and mmseg's reduce_zero_label."""
    sys.path.insert(0, os.path.join(REPO, "datasets"))
    import prepare_ade20k

    crop = (512, 1024) if mmseg_pipeline == "cityscapes" else (512, 512)
    cfg = tiny_cfg(
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", num_classes, "MODEL.PIXEL_MEAN", PIXEL_MEAN, "MODEL.PIXEL_STD", PIXEL_STD,
        "INPUT.FORMAT", "RGB", "INPUT.RESIZE_TYPE", "scale", "INPUT.SCALE.BASE_SIZE", scale,
        "INPUT.SCALE.RANGE", (0.5, 2.0), "INPUT.CROP.ENABLED", True, "INPUT.CROP.SIZE", crop,
        "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", 0.75, "INPUT.RANDOM_FLIP", "horizontal",
        "INPUT.PHOTOMETRIC_DISTORTION.ENABLED", True,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    records, mmseg_labels = [], []
    for i, size in enumerate(sizes):
        label = np.where(rng.random(size) < 0.5, 2, block_label(rng, *size, classes=num_classes)).astype(np.uint8)
        record = write_sample(tmp_path, f"sample{i}", natural_image(rng, *size), label)
        if mmseg_pipeline == "ade20k":  # the release's ids: 0 "other", classes 1..150
            raw = np.where(label == 255, 0, label + 1).astype(np.uint8)
            Image.fromarray(raw).save(tmp_path / f"raw{i}.png")
            prepare_ade20k.convert(str(tmp_path / f"raw{i}.png"), record["sem_seg_file_name"])
            mmseg_labels.append(str(tmp_path / f"raw{i}.png"))
        else:
            mmseg_labels.append(record["sem_seg_file_name"])
        records.append(record)
    mapper = build_train_mapper(cfg)
    model = build_model(cfg).train()
    padded = 0
    for seed in range(3):
        np.random.seed(seed)
        expected_images, expected_labels = mmseg_train_batch(mmseg_pipeline, records, mmseg_labels)
        np.random.seed(seed)
        batch = [mapper(dict(r)) for r in records]
        images = model_input(model, batch)
        torch.testing.assert_close(images, expected_images, rtol=0, atol=0)
        torch.testing.assert_close(torch.stack([s["sem_seg"] for s in batch]), expected_labels.long(), rtol=0, atol=0)
        padded += sum(s["image"].dtype == torch.float32 for s in batch)
    assert padded > 0  # the mean padding was compared too


def test_padding_is_zero_after_normalisation_and_ignored(tmp_path):
    """Bottom and right: pixels 0 once normalised, labels the ignore value."""
    rng = np.random.default_rng(6)
    record = write_sample(tmp_path, "small", natural_image(rng, 21, 30), block_label(rng, 21, 30))
    cfg = tiny_cfg(
        "INPUT.RESIZE_TYPE", "scale", "INPUT.SCALE.BASE_SIZE", 30, "INPUT.SCALE.RANGE", (1.0, 1.0),
        "INPUT.CROP.SIZE", (32, 40), "INPUT.RANDOM_FLIP", "horizontal",
    )  # fmt: skip
    model = build_model(cfg).train()
    for seed in range(4):  # flipped or not, the padding stays bottom-right
        np.random.seed(seed)
        sample = build_train_mapper(cfg)(dict(record))
        images = model_input(model, [sample])[0]
        assert images.shape == (3, 32, 40)
        assert (images[:, 21:] == 0).all() and (images[:, :, 30:] == 0).all() and (images[:, :21, :30] != 0).any()
        sem_seg = sample["sem_seg"]
        assert (sem_seg[21:] == 255).all() and (sem_seg[:, 30:] == 255).all()


# ---------------------------------------------------------------------------
# Test-time resizing
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("test_size, size", [((1024, 2048), (101, 161)), ((1025, 2049), (1024, 2048)), ((512, 2048), (700, 301))])
def test_test_loader_resizes_as_mmseg_test_resize(build, tmp_path, test_size, size):
    """INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST as mmseg's Resize(scale=(MAX, MIN), keep_ratio=True),
    e.g. the 769x769 configs' 2048x1024 -> 2049x1025."""
    rgb = natural_image(np.random.default_rng(7), *size)
    record = write_sample(tmp_path, "test", rgb, block_label(np.random.default_rng(8), *size))
    cfg = tiny_cfg("INPUT.MIN_SIZE_TEST", test_size[0], "INPUT.MAX_SIZE_TEST", test_size[1], "INPUT.FORMAT", "RGB")
    image = build_test_mapper(cfg)(dict(record))["image"]
    reference = build({"type": "Resize", "scale": test_size[::-1], "keep_ratio": True})
    expected = reference(mmseg_results(np.ascontiguousarray(rgb[:, :, ::-1])))["img"]
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy()[:, :, ::-1], expected)


def test_min_size_test_zero_keeps_the_image(tmp_path):
    rgb = natural_image(np.random.default_rng(7), 45, 61)
    record = write_sample(tmp_path, "test", rgb, block_label(np.random.default_rng(8), 45, 61))
    image = build_test_mapper(tiny_cfg("INPUT.MIN_SIZE_TEST", 0, "INPUT.FORMAT", "RGB"))(dict(record))["image"]
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), rgb)


def test_a_long_side_bound_below_the_short_sides_is_refused():
    """detectron2 and mmseg read the two test sizes differently when MAX_SIZE_TEST < MIN_SIZE_TEST."""
    with pytest.raises(InputError, match="INPUT.MAX_SIZE_TEST 800 is below INPUT.MIN_SIZE_TEST 1024"):
        build_test_mapper(tiny_cfg("INPUT.MIN_SIZE_TEST", 1024, "INPUT.MAX_SIZE_TEST", 800))


class RecordingModel(torch.nn.Module):
    """Stands in for the segmentor: records each view and returns its mean colour as logits."""

    def __init__(self):
        super().__init__()
        self.views = []

    def forward(self, batched_inputs):
        image = batched_inputs[0]["image"]
        self.views.append(image)
        logits = image.float().mean(0, keepdim=True).expand(2, -1, -1)
        return [{"sem_seg": torch.nn.functional.interpolate(logits[None], (batched_inputs[0]["height"], batched_inputs[0]["width"]))[0]}]


def test_test_time_views_equal_mmseg_tta_resize(build):
    """Each TEST.AUG view is mmseg's TTA Resize(scale_factor=r, keep_ratio=True) of the same image."""
    rgb = natural_image(np.random.default_rng(9), 67, 121)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    model = RecordingModel()
    SemanticSegmentorWithTTA(model, scales=scales)([{"image": torch.as_tensor(rgb.transpose(2, 0, 1).copy())}])
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert len(model.views) == len(scales)  # one unflipped whole view per scale
    for scale, view in zip(scales, model.views):
        expected = build({"type": "Resize", "scale_factor": scale, "keep_ratio": True})(mmseg_results(bgr))["img"]
        assert view.dtype == torch.uint8
        np.testing.assert_array_equal(view.permute(1, 2, 0).numpy()[:, :, ::-1], expected)


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_predictor_and_test_loader_give_the_same_tta_logits(tmp_path, scale):
    """demo.py's route (SegmentationPredictor on an RGB array) and --eval-only's
    (the test loader's dict) hand TTA the same uint8 tensor: identical logits."""
    rgb = natural_image(np.random.default_rng(10), 53, 77)
    record = write_sample(tmp_path, "tta", rgb, block_label(np.random.default_rng(11), 53, 77))
    cfg = tiny_cfg("INPUT.FORMAT", "BGR")  # the channel swap happens on both routes
    tta = SemanticSegmentorWithTTA(build_model(cfg).eval(), scales=(scale,), flip=True)
    with torch.no_grad():
        loader_logits = tta([build_test_mapper(cfg)(dict(record))])[0]["sem_seg"]
        predictor_logits = SegmentationPredictor(cfg, tta)(rgb)
    assert loader_logits.shape[-2:] == (53, 77)
    torch.testing.assert_close(predictor_logits, loader_logits, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Config keys
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("base_size, bounds", [(96, (96, 96)), ((2048, 512), (2048, 512)), ([512, 2048], (2048, 512))])
def test_base_size_is_an_int_or_a_long_short_pair(base_size, bounds):
    cfg = tiny_cfg("INPUT.RESIZE_TYPE", "scale", "INPUT.SCALE.BASE_SIZE", base_size, "INPUT.SCALE.RANGE", (0.5, 2.0))
    resize = build_train_augmentation(cfg)[0]
    assert isinstance(resize, RandomRescale) and resize.scale == bounds and resize.ratio_range == (0.5, 2.0)


@pytest.mark.parametrize(
    "opts, message",
    [
        (["INPUT.SCALE.BASE_SIZE", (2048,)], "INPUT.SCALE.BASE_SIZE must be a positive int or a pair"),
        (["INPUT.SCALE.BASE_SIZE", 0], "INPUT.SCALE.BASE_SIZE must be a positive int or a pair"),
        (["INPUT.SCALE.BASE_SIZE", 96, "INPUT.SCALE.RANGE", (0.5, 1.0, 2.0)], r"INPUT.SCALE.RANGE must be \(low, high\)"),
        (["INPUT.SCALE.BASE_SIZE", None], "INPUT.RESIZE_TYPE 'scale' needs INPUT.SCALE.BASE_SIZE"),
        (["INPUT.SCALE.BASE_SIZE", 96, "INPUT.SCALE.RANGE", (2.0, 0.5)], "INPUT.SCALE.RANGE must be"),
        (
            ["INPUT.SCALE.BASE_SIZE", 96, "INPUT.FORMAT", "L", "INPUT.PHOTOMETRIC_DISTORTION.ENABLED", True],
            "needs INPUT.FORMAT 'RGB' or 'BGR'",
        ),
        (
            ["INPUT.SCALE.BASE_SIZE", 96, "INPUT.PHOTOMETRIC_DISTORTION.ENABLED", True,
             "INPUT.PHOTOMETRIC_DISTORTION.HUE_DELTA", 0],
            "INPUT.PHOTOMETRIC_DISTORTION.HUE_DELTA must be an int from 1 to 90",
        ),
        (
            ["INPUT.SCALE.BASE_SIZE", 96, "INPUT.PHOTOMETRIC_DISTORTION.ENABLED", True,
             "INPUT.PHOTOMETRIC_DISTORTION.CONTRAST_RANGE", (1.5, 0.5)],
            "INPUT.PHOTOMETRIC_DISTORTION.CONTRAST_RANGE must be",
        ),
    ],
)
def test_bad_pipeline_keys_are_named(opts, message):
    cfg = tiny_cfg("INPUT.RESIZE_TYPE", "scale", *opts)
    with pytest.raises(InputError, match=message):
        build_train_augmentation(cfg)
