"""The generated Cityscapes-layout dataset, its preparation, registration and the training mapper."""
import glob
import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from PIL import Image

from cityscapesscripts.helpers.labels import id2label
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from danet import add_danet_config, register_cityscapes_sem_seg
from danet.data import build_train_mapper

from helpers import REPO
GT_SUFFIXES = ("polygons.json", "labelIds.png", "instanceIds.png", "color.png")


def run_script(name, *args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "datasets", name), *map(str, args)], capture_output=True, text=True
    )


def make_toy(root, seed=0, train=3, val=2):
    done = run_script("make_toy_cityscapes.py", "--out", root, "--width", 128, "--height", 64,
                      "--train", train, "--val", val, "--seed", seed)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_cityscapes")
    make_toy(root)
    done = run_script("prepare_cityscapes.py", "--root", root, "--workers", 2)
    assert done.returncode == 0, done.stderr
    return root


def register(root, split):
    name = f"test_toy_{split}_{uuid.uuid4().hex[:8]}"
    register_cityscapes_sem_seg(name, str(root), split)
    return name


def test_generator_writes_the_cityscapes_layout(toy_root):
    for split, count in (("train", 3), ("val", 2)):
        images = sorted(glob.glob(f"{toy_root}/leftImg8bit/{split}/*/*_leftImg8bit.png"))
        assert len(images) == count
        for image in images:
            city = os.path.basename(os.path.dirname(image))
            stem = os.path.basename(image)[: -len("leftImg8bit.png")]
            assert stem.startswith(city + "_") and len(stem.split("_")) == 4  # city_seq_frame_
            for suffix in GT_SUFFIXES:
                assert os.path.isfile(f"{toy_root}/gtFine/{split}/{city}/{stem}gtFine_{suffix}")
            assert Image.open(image).size == (128, 64)
            with open(f"{toy_root}/gtFine/{split}/{city}/{stem}gtFine_polygons.json") as f:
                annotation = json.load(f)
            assert (annotation["imgWidth"], annotation["imgHeight"]) == (128, 64)
            names = {obj["label"] for obj in annotation["objects"]}
            assert {"sky", "road", "sidewalk", "car"} <= names


def test_generator_is_deterministic_in_its_seed(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        make_toy(tmp_path / name, seed=seed, train=1, val=0)
    image = "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    a, b, c = (np.asarray(Image.open(tmp_path / name / image)) for name in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_train_ids_agree_with_label_ids_through_the_label_table(toy_root):
    lut = np.full(256, 255, np.uint8)
    for label_id, label in id2label.items():
        if 0 <= label_id < 256 and 0 <= label.trainId < 255:
            lut[label_id] = label.trainId
    label_files = sorted(glob.glob(f"{toy_root}/gtFine/*/*/*_gtFine_labelIds.png"))
    assert len(label_files) == 5
    for label_file in label_files:
        label_ids = np.asarray(Image.open(label_file))
        train_ids = np.asarray(Image.open(label_file.replace("labelIds", "labelTrainIds")))
        np.testing.assert_array_equal(train_ids, lut[label_ids])
        assert len(np.unique(train_ids)) >= 4


def test_registered_dataset_loads_with_cityscapes_metadata(toy_root):
    name = register(toy_root, "val")
    records = DatasetCatalog.get(name)
    assert len(records) == 2
    for record in records:
        assert os.path.isfile(record["file_name"]) and os.path.isfile(record["sem_seg_file_name"])
        assert record["sem_seg_file_name"].endswith("_gtFine_labelTrainIds.png")
        assert (record["height"], record["width"]) == (64, 128)
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes[0] == "road" and len(meta.stuff_classes) == len(meta.stuff_colors) == 19
    assert meta.stuff_colors[0] == [128, 64, 128]  # road, from cityscapesScripts
    assert (meta.ignore_label, meta.evaluator_type) == (255, "sem_seg")


def test_missing_train_ids_say_to_run_prepare(tmp_path):
    make_toy(tmp_path, train=2, val=0)
    name = register(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="prepare_cityscapes.py"):
        DatasetCatalog.get(name)


def test_missing_root_names_the_folder_and_detectron2_datasets(tmp_path):
    name = register(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="nowhere.*DETECTRON2_DATASETS"):
        DatasetCatalog.get(name)


def mapper_cfg(**overrides):
    cfg = get_cfg()
    add_danet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "base.yaml"))
    cfg.INPUT.RESIZE_TYPE = "scale"
    cfg.INPUT.SCALE.BASE_SIZE = 128
    cfg.INPUT.SCALE.RANGE = (1.0, 1.0)
    cfg.INPUT.CROP.SIZE = (96, 160)
    cfg.INPUT.RANDOM_FLIP = "none"
    for key, value in overrides.items():
        node, _, leaf = key.rpartition(".")
        setattr(cfg.INPUT if not node else getattr(cfg.INPUT, node), leaf, value)
    return cfg


def test_mapper_pads_crops_of_small_images_with_the_ignore_label(toy_root):
    # Images are 64x128, the crop 96x160: the crop is the whole image, padded bottom and right.
    record = DatasetCatalog.get(register(toy_root, "train"))[0]
    sample = build_train_mapper(mapper_cfg())(dict(record))
    assert sample["image"].shape == (3, 96, 160)
    assert sample["sem_seg"].shape == (96, 160)
    sem_seg = sample["sem_seg"].numpy()
    assert (sem_seg[64:] == 255).all() and (sem_seg[:, 128:] == 255).all()
    np.testing.assert_array_equal(sem_seg[:64, :128], np.asarray(Image.open(record["sem_seg_file_name"])))
    # The image is padded with the pixel mean (float32), which the model normalises to 0.
    image = sample["image"].numpy()
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[:, :64, :128], np.asarray(Image.open(record["file_name"])).transpose(2, 0, 1))
    mean = np.asarray(mapper_cfg().MODEL.PIXEL_MEAN, np.float32)[:, None]
    assert (image[:, 64:].reshape(3, -1) == mean).all() and (image[:, :, 128:].reshape(3, -1) == mean).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {"RESIZE_TYPE": "shortest_edge", "MIN_SIZE_TRAIN": (48, 96), "RANDOM_FLIP": "horizontal"},
        {"SCALE.RANGE": (0.5, 2.0), "PHOTOMETRIC_DISTORTION.ENABLED": True, "CROP.SINGLE_CATEGORY_MAX_AREA": 0.75},
    ],
)
def test_mapper_always_yields_the_configured_crop(toy_root, overrides):
    record = DatasetCatalog.get(register(toy_root, "train"))[0]
    mapper = build_train_mapper(mapper_cfg(**overrides))
    for _ in range(6):
        sample = mapper(dict(record))
        assert sample["image"].shape == (3, 96, 160) and sample["sem_seg"].shape == (96, 160)
        assert set(np.unique(sample["sem_seg"].numpy())) <= set(range(19)) | {255}


@pytest.mark.parametrize("key, value", [("RESIZE_TYPE", "random"), ("RANDOM_FLIP", "both"), ("CROP.TYPE", "relative")])
def test_mapper_rejects_unknown_options_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"INPUT.{key}"):
        build_train_mapper(mapper_cfg(**{key: value}))


def test_builtin_cityscapes_splits_use_the_checked_loader():
    image_dir = MetadataCatalog.get("cityscapes_fine_sem_seg_train").image_dir
    if os.path.isdir(image_dir):
        pytest.skip(f"real Cityscapes found at {image_dir}")
    with pytest.raises(FileNotFoundError, match="DETECTRON2_DATASETS"):
        DatasetCatalog.get("cityscapes_fine_sem_seg_train")
