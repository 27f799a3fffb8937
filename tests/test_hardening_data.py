"""The dataset mapper: labels of other bit depths, labels left to the evaluator
at test time, and image/label alignment through the training augmentation."""
import numpy as np
import pytest
from PIL import Image

from danet.data import BadSampleError, build_test_mapper, build_train_mapper
from helpers import COLORS, tiny_cfg

PALETTE = np.array(COLORS, np.uint8)  # 19 distinct colours, one per train id


def augmentation_cfg(*opts):
    return tiny_cfg(
        "INPUT.RESIZE_TYPE", "scale", "INPUT.SCALE.BASE_SIZE", 128, "INPUT.SCALE.RANGE", (0.5, 2.0),
        "INPUT.CROP.SIZE", (64, 96), "INPUT.PHOTOMETRIC_DISTORTION.ENABLED", False, *opts,
    )  # fmt: skip


def write_sample(tmp_path, label):
    """A record of an image whose colours encode ``label`` (255: black) and of
    ``label`` as an 8-bit PNG."""
    image = np.where(label[..., None] == 255, 0, PALETTE[np.minimum(label, 18)]).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(label).save(tmp_path / "label.png")
    return {
        "file_name": str(tmp_path / "image.png"), "sem_seg_file_name": str(tmp_path / "label.png"),
        "height": image.shape[0], "width": image.shape[1],
    }  # fmt: skip


def blocky_label(rng, shape=(96, 128), block=16):
    """Random train ids (and some 255) in ``block``-sized squares."""
    blocks = rng.integers(0, 20, size=(shape[0] // block, shape[1] // block))
    blocks[blocks == 19] = 255
    return np.kron(blocks, np.ones((block, block), int)).astype(np.uint8)


def save_wide_label(record, tmp_path, label, mode, name):
    """``label`` saved in PIL ``mode`` as the record's label."""
    image = Image.fromarray(label.astype({"I;16": np.uint16, "I": np.int32}[mode]))
    image.save(tmp_path / name)
    assert Image.open(tmp_path / name).mode == mode
    record["sem_seg_file_name"] = str(tmp_path / name)


@pytest.mark.parametrize("mode, name", [("I;16", "label.png"), ("I", "label.tif")])
def test_wide_labels_in_range_are_read(tmp_path, mode, name):
    label = blocky_label(np.random.default_rng(0))
    record = write_sample(tmp_path, label)
    save_wide_label(record, tmp_path, label, mode, name)
    mapper = build_train_mapper(augmentation_cfg())
    for _ in range(3):  # random scales: labels are resized up and down
        sample = mapper(dict(record))
        assert sample["sem_seg"].shape == (64, 96)
        assert set(np.unique(sample["sem_seg"].numpy())) <= set(np.unique(label))


@pytest.mark.parametrize("mode, name, bad_id, reason", [
    ("I;16", "label.png", 300, r"ids \[300\] are outside"),
    ("I", "label.tif", -1, r"ids \[-1\] are outside"),
    ("I;16", "label.png", 65535, "id 65535 does not fit the 8 bits.*IGNORE_VALUE 255"),
])  # fmt: skip
def test_wide_labels_out_of_range_are_one_line_errors(tmp_path, mode, name, bad_id, reason):
    label = blocky_label(np.random.default_rng(0))
    record = write_sample(tmp_path, label)
    label = label.astype(np.int64)
    if bad_id == 65535:  # ignored pixels stored as 65535, and that ignore value configured
        label[label == 255] = bad_id
    label[0, 0] = bad_id
    save_wide_label(record, tmp_path, label, mode, name)
    cfg = augmentation_cfg("MODEL.SEM_SEG_HEAD.IGNORE_VALUE", 65535 if bad_id == 65535 else 255)
    with pytest.raises(BadSampleError, match=f"^{tmp_path / name}: {reason}") as error:
        build_train_mapper(cfg)(record)
    assert "\n" not in str(error.value)


def test_test_mapper_leaves_the_label_to_the_evaluator(tmp_path):
    record = write_sample(tmp_path, blocky_label(np.random.default_rng(0)))
    record["sem_seg_file_name"] = str(tmp_path / "missing.png")
    sample = build_test_mapper(augmentation_cfg())(dict(record))
    assert "sem_seg" not in sample and sample["image"].shape == (3, 48, 64)


@pytest.mark.parametrize("opts", [
    ["INPUT.RANDOM_FLIP", "horizontal"],
    ["INPUT.RANDOM_FLIP", "vertical", "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", 0.5],
    ["INPUT.RESIZE_TYPE", "shortest_edge", "INPUT.MIN_SIZE_TRAIN", (48, 160), "INPUT.MAX_SIZE_TRAIN", 256],
])  # fmt: skip
def test_augmented_image_and_label_stay_aligned(tmp_path, opts):
    np.random.seed(0)  # detectron2's augmentations draw from numpy's global generator
    record = write_sample(tmp_path, blocky_label(np.random.default_rng(1)))
    mapper = build_train_mapper(augmentation_cfg(*opts))
    checked = 0
    for _ in range(8):
        sample = mapper(dict(record))
        image = sample["image"].permute(1, 2, 0).numpy()
        sem_seg = sample["sem_seg"].numpy()
        # Away from class edges, where bilinear (image) and nearest (label)
        # resizing differ: pixels whose 5x5 neighbourhood has a single label,
        # not at the border (the crop may cut just inside a class edge).
        padded = np.pad(sem_seg.astype(int), 2, constant_values=-1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
        interior = (windows == sem_seg[..., None, None]).all(axis=(-2, -1))
        labelled = interior & (sem_seg != 255)
        np.testing.assert_array_equal(image[labelled], PALETTE[sem_seg[labelled]])
        # Ignored pixels away from label edges (the sample's black blocks and the
        # padding, filled with the pixel mean) are each black or the pixel mean;
        # which of the two a pixel is, is not checked.
        ignored = image[interior & (sem_seg == 255)]
        mean = np.asarray(augmentation_cfg().MODEL.PIXEL_MEAN, np.float32)
        assert ((ignored == 0).all(-1) | (ignored == mean).all(-1)).all()
        checked += labelled.sum()
    assert checked > 0.3 * 8 * sem_seg.size
