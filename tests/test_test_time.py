"""Multi-scale + flip testing and sliding-window inference (danet/modeling/test_time_augmentation.py)."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import sem_seg_postprocess

from danet.modeling.test_time_augmentation import (
    SemanticSegmentorWithTTA,
    build_test_time_segmentor,
    check_window,
    sliding_window_logits,
    window_starts,
)
from helpers import tiny_cfg


class PixelwiseSegmentor(nn.Module):
    """A stand-in SemanticSegmentor whose logits at a pixel depend only on that
    pixel (a fixed 1x1 conv), so any tiling of the image gives the same logits.
    It records the size of every image it is given."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.classify = nn.Conv2d(3, num_classes, 1)
        self.seen_sizes = []

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            image = x["image"].float()
            self.seen_sizes.append(tuple(image.shape[-2:]))
            logits = self.classify(image[None])[0]
            logits = sem_seg_postprocess(logits, image.shape[-2:], x["height"], x["width"])
            outputs.append({"sem_seg": logits})
        return outputs


class WindowMeanSegmentor(nn.Module):
    """A stand-in whose single logit is, everywhere, the mean of its input image."""

    def forward(self, batched_inputs):
        return [
            {"sem_seg": x["image"].float().mean().expand(1, x["height"], x["width"]).clone()}
            for x in batched_inputs
        ]


@pytest.fixture(scope="module")
def danet():
    torch.manual_seed(0)
    return build_model(tiny_cfg()).eval()


def random_image(height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


@torch.no_grad()
def test_single_unflipped_view_is_the_plain_model(danet):
    inputs = [{"image": random_image(40, 56), "height": 60, "width": 84}]
    expected = danet(inputs)[0]["sem_seg"]
    got = SemanticSegmentorWithTTA(danet, scales=(1.0,), flip=False)(inputs)[0]["sem_seg"]
    assert got.shape == (19, 60, 84)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@torch.no_grad()
def test_flip_averages_the_model_and_its_mirror(danet):
    image = random_image(40, 56, seed=1)
    plain = danet([{"image": image, "height": 40, "width": 56}])[0]["sem_seg"]
    mirrored = danet([{"image": image.flip(-1), "height": 40, "width": 56}])[0]["sem_seg"].flip(-1)
    got = SemanticSegmentorWithTTA(danet, scales=(1.0,), flip=True)([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(got, (plain + mirrored) / 2)
    # A random model is not flip-invariant, so the flip really changes the result.
    assert not torch.allclose(got, plain, atol=1e-4)


@torch.no_grad()
def test_scales_resize_the_input_and_average_at_output_size():
    torch.manual_seed(0)
    model = PixelwiseSegmentor()
    inputs = [{"image": random_image(30, 50), "height": 60, "width": 100}]
    scales = (0.5, 1.0, 1.5)
    got = SemanticSegmentorWithTTA(model, scales=scales)(inputs)[0]["sem_seg"]
    assert model.seen_sizes == [(15, 25), (30, 50), (45, 75)]
    single = [SemanticSegmentorWithTTA(model, scales=(s,))(inputs)[0]["sem_seg"] for s in scales]
    assert got.shape == (4, 60, 100)
    torch.testing.assert_close(got, sum(single) / len(single))


@torch.no_grad()
def test_probabilities_average_the_softmax_of_each_view():
    """mmsegmentation's multi-scale + flip: softmax per view, then the mean."""
    torch.manual_seed(0)
    model = PixelwiseSegmentor()
    inputs = [{"image": random_image(30, 50), "height": 30, "width": 50}]
    scales = (0.5, 1.5)
    got = SemanticSegmentorWithTTA(model, scales=scales, average="probabilities")(inputs)[0]["sem_seg"]
    single = [SemanticSegmentorWithTTA(model, scales=(s,))(inputs)[0]["sem_seg"] for s in scales]
    torch.testing.assert_close(got, sum(v.softmax(dim=0) for v in single) / len(single))
    torch.testing.assert_close(got.sum(dim=0), torch.ones(30, 50))


def test_average_applies_to_augmented_views_only(danet):
    cfg = tiny_cfg("TEST.AUG.AVERAGE", "probabilities", "TEST.SLIDING_WINDOW.ENABLED", True)
    assert build_test_time_segmentor(cfg, danet, augment=True).average == "probabilities"
    assert build_test_time_segmentor(cfg, danet, augment=False).average == "logits"


@torch.no_grad()
@pytest.mark.parametrize("align_corners", [False, True])
def test_windows_are_resized_to_the_output_size_with_align_corners(align_corners):
    """mmsegmentation's 769x769 protocol: stitched window logits, resized back
    to the original size with the config's align_corners."""
    torch.manual_seed(0)
    model = PixelwiseSegmentor()
    image = random_image(37, 53)
    stitched = model([{"image": image, "height": 37, "width": 53}])[0]["sem_seg"]
    got = SemanticSegmentorWithTTA(
        model, crop_size=(16, 24), stride=(10, 15), align_corners=align_corners
    )([{"image": image, "height": 50, "width": 70}])[0]["sem_seg"]
    expected = F.interpolate(stitched[None], size=(50, 70), mode="bilinear", align_corners=align_corners)[0]
    torch.testing.assert_close(got, expected)


def test_window_starts_cover_the_image_and_end_at_its_border():
    assert window_starts(10, 6, 4) == [0, 4]
    assert window_starts(2048, 768, 512) == [0, 512, 1024, 1280]
    assert window_starts(500, 768, 512) == [0]
    assert window_starts(13, 5, 5) == [0, 5, 8]


@torch.no_grad()
def test_window_at_least_the_image_is_the_plain_model(danet):
    inputs = [{"image": random_image(40, 56, seed=2), "height": 40, "width": 56}]
    expected = danet(inputs)[0]["sem_seg"]
    got = SemanticSegmentorWithTTA(danet, crop_size=(40, 64), stride=(8, 8))(inputs)[0]["sem_seg"]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@torch.no_grad()
def test_overlapping_windows_are_averaged_by_their_count():
    # Pixel value = column index, so each window's mean names the window:
    # columns [0, 6) average 2.5 and columns [4, 10) average 6.5.
    image = torch.arange(10.0).expand(3, 4, 10).clone()
    got = SemanticSegmentorWithTTA(WindowMeanSegmentor(), crop_size=(4, 6), stride=(4, 4))(
        [{"image": image, "height": 4, "width": 10}]
    )[0]["sem_seg"]
    expected = torch.tensor([2.5] * 4 + [4.5] * 2 + [6.5] * 4).expand(1, 4, 10)
    torch.testing.assert_close(got, expected)


@torch.no_grad()
def test_windows_stitch_a_pixelwise_model_exactly():
    torch.manual_seed(0)
    model = PixelwiseSegmentor()
    image = random_image(37, 53)
    inputs = [{"image": image, "height": 37, "width": 53}]
    expected = model(inputs)[0]["sem_seg"]
    model.seen_sizes.clear()
    got = SemanticSegmentorWithTTA(model, crop_size=(16, 24), stride=(10, 15))(inputs)[0]["sem_seg"]
    torch.testing.assert_close(got, expected)
    assert len(model.seen_sizes) == len(window_starts(37, 16, 10)) * len(window_starts(53, 24, 15))
    assert set(model.seen_sizes) == {(16, 24)}


@torch.no_grad()
def test_the_exported_runner_stitches_numpy_windows_with_the_same_function():
    """The runner slices numpy images and its graph returns torch logits: the
    shared stitching gives what SemanticSegmentorWithTTA gives on the tensor."""
    torch.manual_seed(0)
    model = PixelwiseSegmentor()
    image = random_image(37, 53)
    windowed = SemanticSegmentorWithTTA(model, crop_size=(16, 24), stride=(10, 15))
    expected = windowed([{"image": image, "height": 37, "width": 53}])[0]["sem_seg"]
    crops = []

    def segment(crop):
        crops.append(crop.shape)
        return model([{"image": torch.from_numpy(crop), "height": crop.shape[1], "width": crop.shape[2]}])[0]["sem_seg"]

    got = sliding_window_logits(image.numpy(), segment, (16, 24), (10, 15))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert len(crops) == len(window_starts(37, 16, 10)) * len(window_starts(53, 24, 15))
    assert sliding_window_logits(image.numpy(), segment, None, None).shape == (4, 37, 53)


def test_window_checks_name_the_options_they_came_from():
    assert check_window(32, (16, 24)) == ((32, 32), (16, 24))
    with pytest.raises(ValueError, match=r"--stride \(40, 16\) must not exceed --window \(32, 32\)"):
        check_window((32, 32), (40, 16), keys=("--window", "--stride"))


@torch.no_grad()
def test_scales_flip_and_windows_compose_to_the_exact_output_size(danet):
    # A 1024x2048 Cityscapes frame shrunk 1/16 and made odd, with the loader's
    # original size as the requested output.
    inputs = [{"image": random_image(65, 129), "height": 1031, "width": 2053}]
    model = SemanticSegmentorWithTTA(
        PixelwiseSegmentor(), scales=(0.75, 1.25), flip=True, crop_size=32, stride=21
    )
    got = model(inputs)[0]["sem_seg"]
    assert got.shape == (4, 1031, 2053)
    assert torch.isfinite(got).all()
    assert max(h for h, _ in model.model.seen_sizes) <= 32
    assert max(w for _, w in model.model.seen_sizes) <= 32
    # The real model runs the same composition to the same size.
    cfg = tiny_cfg(
        "TEST.AUG.ENABLED", True,
        "TEST.AUG.SCALES", (0.75, 1.25),
        "TEST.SLIDING_WINDOW.ENABLED", True,
        "TEST.SLIDING_WINDOW.CROP_SIZE", (48, 48),
        "TEST.SLIDING_WINDOW.STRIDE", (32, 32),
    )
    inputs = [{"image": random_image(65, 129), "height": 130, "width": 258}]
    got = build_test_time_segmentor(cfg, danet, augment=True)(inputs)[0]["sem_seg"]
    assert got.shape == (19, 130, 258)


def test_build_returns_the_model_when_nothing_is_enabled(danet):
    cfg = tiny_cfg("TEST.AUG.ENABLED", True)
    assert build_test_time_segmentor(cfg, danet) is danet
    wrapped = build_test_time_segmentor(cfg, danet, augment=True)
    assert wrapped.scales == (0.75, 1.0, 1.25, 1.5, 1.75, 2.0) and wrapped.flip
    assert wrapped.crop_size is None


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(crop_size=(32, 32), stride=(40, 16)), "TEST.SLIDING_WINDOW.STRIDE"),
        (dict(crop_size=(0, 32), stride=(16, 16)), "TEST.SLIDING_WINDOW.CROP_SIZE"),
        (dict(scales=()), "TEST.AUG.SCALES"),
        (dict(scales=(1.0, -0.5)), "TEST.AUG.SCALES"),
        (dict(average="mean"), "TEST.AUG.AVERAGE"),
    ],
)
def test_bad_settings_name_the_config_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        SemanticSegmentorWithTTA(PixelwiseSegmentor(), **kwargs)
