"""ADE20K, PASCAL VOC 2012 (+SBD), PASCAL Context 59 and COCO-Stuff-164k: a tiny
release in each official layout goes through the README's prepare command,
trains a few CPU iterations with the dataset's config and is evaluated."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser

import train_net
from danet.data import datasets as registrations
from helpers import REPO, TINY_MODEL_OPTS

SIZE = (40, 56)  # height, width of the generated images


def write_image(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)).save(path)


def write_png(path, label, palette=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    picture = Image.fromarray(np.asarray(label, np.uint8))
    if palette:  # VOC's labels are palette PNGs
        picture = picture.convert("P")
        picture.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    picture.save(path)


def label_of(values, seed):
    """A SIZE label made of ``values`` (each present)."""
    rng = np.random.default_rng(seed)
    label = rng.choice(np.asarray(values), size=SIZE)
    label.flat[: len(values)] = values
    return label


def make_ade20k(datasets):
    root = datasets / "ADEChallengeData2016"
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i in range(2):
            write_image(root / "images" / split / f"{prefix}_{i:08d}.jpg", i)
            write_png(root / "annotations" / split / f"{prefix}_{i:08d}.png", label_of([0, 1, 2, 150], i))
    # Official value -> prepared value.
    return root / "annotations_detectron2" / "training" / "ADE_train_00000000.png", {0: 255, 1: 0, 2: 1, 150: 149}


def make_voc(datasets):
    root = datasets / "VOCdevkit" / "VOC2012"
    sbd = datasets / "benchmark_RELEASE" / "dataset"
    voc = {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003", "2007_000004"]}
    sbd_split = {"train": ["2008_000001", "2007_000003"], "val": ["2008_000002", "2007_000001"]}
    for i, image_id in enumerate(sorted({i for ids in (*voc.values(), *sbd_split.values()) for i in ids})):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", i)
    for split, ids in voc.items():
        os.makedirs(root / "ImageSets" / "Segmentation", exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for image_id in ids:
            write_png(root / "SegmentationClass" / f"{image_id}.png", label_of([0, 15, 255], len(image_id)), palette=True)
    os.makedirs(sbd / "cls")
    for split, ids in sbd_split.items():
        (sbd / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for image_id in ids:
            segmentation = label_of([0, 7, 20], 3).astype(np.uint8)  # SBD has no 255
            scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": segmentation}})
    return root / "SegmentationClassAug" / "2008_000001.png", {0: 0, 7: 7, 20: 20}


def make_pascal_context(datasets):
    root = datasets / "VOCdevkit" / "VOC2010"
    phases = {"2008000002": "train", "2008000003": "train", "2008000007": "val", "2008000008": "val"}
    images = [{"image_id": int(i), "phase": phase, "file_name": f"{i[:4]}_{i[4:]}.jpg"} for i, phase in phases.items()]
    (datasets / "VOCdevkit" / "VOC2010").mkdir(parents=True)
    (root / "trainval_merged.json").write_text(json.dumps({"images": images, "annos_segmentation": []}))
    os.makedirs(root / "trainval")
    for k, image_id in enumerate(f"{i[:4]}_{i[4:]}" for i in phases):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", k)
        label_map = label_of([0, 2, 100, 284, 458], k).astype(np.uint16)
        scipy.io.savemat(root / "trainval" / f"{image_id}.mat", {"LabelMap": label_map})
    return root / "SegmentationClassContext59" / "2008_000002.png", {0: 255, 2: 0, 100: 255, 284: 36, 458: 58}


def make_coco_stuff(datasets):
    root = datasets / "coco"
    for split in ("train2017", "val2017"):
        for i in range(2):
            write_image(root / split / f"{i:012d}.jpg", i)
            write_png(root / "stuffthingmaps_trainval2017" / split / f"{i:012d}.png", label_of([0, 11, 91, 181, 255], i))
    return root / "stuffthingmaps_detectron2" / "train2017" / "000000000000.png", {0: 0, 11: 255, 91: 80, 181: 170, 255: 255}


# name: (release maker, prepare script, registration, config, train and test datasets, prepared files)
DATASETS = {
    "ade20k": (make_ade20k, "prepare_ade20k.py", registrations.register_all_ade20k, "ade20k", "ade20k_sem_seg_train", "ade20k_sem_seg_val", 4),
    "voc": (make_voc, "prepare_voc.py", registrations.register_all_voc, "voc", "voc_2012_sem_seg_train_aug", "voc_2012_sem_seg_val", 6),
    "pascal_context": (make_pascal_context, "prepare_pascal_context.py", registrations.register_all_pascal_context, "pascal_context", "pascal_context_59_sem_seg_train", "pascal_context_59_sem_seg_val", 4),
    "coco_stuff": (make_coco_stuff, "prepare_coco_stuff.py", registrations.register_all_coco_stuff, "coco_stuff", "coco_2017_train_stuff_sem_seg", "coco_2017_val_stuff_sem_seg", 4),
}  # fmt: skip
TRAIN_OPTS = TINY_MODEL_OPTS + [
    "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES5_MULTI_GRID", "[1, 1, 1]",
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
    "INPUT.SCALE.BASE_SIZE", "64", "INPUT.CROP.SIZE", "(32, 32)", "INPUT.MIN_SIZE_TEST", "0",
]  # fmt: skip


def prepare(script, datasets, *args):
    """The README's command: the dataset under $DETECTRON2_DATASETS, default --root."""
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets))
    command = [sys.executable, os.path.join(REPO, "datasets", script), "--workers", "2", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_prepare_train_and_evaluate(name, tmp_path):
    make_release, script, register_all, config, train, test, num_files = DATASETS[name]
    datasets = tmp_path / "datasets"
    prepared_file, expected_values = make_release(datasets)
    done = prepare(script, datasets)
    assert done.returncode == 0, done.stderr
    assert f"converted {num_files}, skipped 0 (up to date), failed 0" in done.stdout

    official = {v: k for k, v in expected_values.items()}
    prepared = np.array(Image.open(prepared_file))
    assert prepared.shape == SIZE and set(np.unique(prepared)) <= set(expected_values.values())
    for value in set(expected_values.values()) - {255}:
        assert value in prepared, f"{official[value]} was not converted to {value}"
    assert "converted 0, skipped" in prepare(script, datasets).stdout

    register_all(str(datasets))
    output = tmp_path / "output"
    opts = TRAIN_OPTS + ["OUTPUT_DIR", str(output)]
    config_file = os.path.join(REPO, "configs", config, "r101.yaml")
    train_net.main(default_argument_parser().parse_args(["--config-file", config_file, *opts]))
    weights = ["MODEL.WEIGHTS", str(output / "model_final.pth")]
    args = default_argument_parser().parse_args(["--config-file", config_file, "--eval-only", *opts, *weights])
    results = train_net.main(args)["sem_seg"]
    classes = MetadataCatalog.get(test).stuff_classes
    assert 0 <= results["mIoU"] <= 100 and f"IoU-{classes[-1]}" in results
    assert len(DatasetCatalog.get(train)) >= 2


def test_voc_train_aug_is_voc_train_and_sbd_without_voc_val(tmp_path):
    datasets = tmp_path / "datasets"
    make_voc(datasets)
    root = datasets / "VOCdevkit" / "VOC2012"
    assert prepare("prepare_voc.py", datasets).returncode == 0
    train_aug = (root / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    assert train_aug == ["2007_000001", "2007_000002", "2008_000001", "2008_000002"]
    # VOC's own label wins over SBD's for an image both annotate.
    voc_label = np.array(Image.open(root / "SegmentationClass" / "2007_000001.png"))
    assert (np.array(Image.open(root / "SegmentationClassAug" / "2007_000001.png")) == voc_label).all()
    without_sbd = prepare("prepare_voc.py", datasets, "--no-sbd", "--force")
    assert without_sbd.returncode == 0 and "train_aug.txt: 2 images" in without_sbd.stdout


def test_prepare_scripts_agree_with_the_registered_classes():
    def load(script):
        spec = importlib.util.spec_from_file_location(script, os.path.join(REPO, "datasets", f"{script}.py"))
        sys.path.insert(0, os.path.join(REPO, "datasets"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    from danet.data.datasets.register_coco_stuff import COCO_STUFF_MAP_VALUES
    from danet.data.datasets.register_pascal_context import CONTEXT_59

    assert load("prepare_coco_stuff").MAP_VALUES == COCO_STUFF_MAP_VALUES
    assert list(load("prepare_pascal_context").CONTEXT_59_IDS) == [i for i, _ in CONTEXT_59]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_release_is_named_in_one_line(name, tmp_path):
    done = prepare(DATASETS[name][1], tmp_path)
    assert done.returncode != 0
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and str(tmp_path) in message and "--root" in message


@pytest.mark.parametrize("name", ["ade20k", "pascal_context"])
def test_broken_file_is_named_and_the_others_still_convert(name, tmp_path):
    make_release, script, *_ = DATASETS[name]
    datasets = tmp_path / "datasets"
    make_release(datasets)
    if name == "ade20k":
        broken = datasets / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
        write_png(broken, np.full(SIZE, 200))  # beyond ADE20K's 150 classes
    else:
        broken = datasets / "VOCdevkit" / "VOC2010" / "trainval" / "2008_000003.mat"
        broken.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    done = prepare(script, datasets)
    assert done.returncode == 1
    assert str(broken) in done.stderr and "converted 3, skipped 0 (up to date), failed 1" in done.stdout
    assert not list(datasets.rglob("*.tmp.png"))


def test_unprepared_dataset_names_the_prepare_command(tmp_path):
    datasets = tmp_path / "datasets"
    make_ade20k(datasets)
    registrations.register_all_ade20k(str(datasets))
    with pytest.raises(FileNotFoundError, match="annotations_detectron2/training does not exist: run `python datasets/prepare_ade20k.py"):
        DatasetCatalog.get("ade20k_sem_seg_train")


MMSEG_CONFIGS = sorted(
    f[: -len(".yaml")]
    for f in os.listdir(os.path.join(REPO, "configs", "mmseg"))
    if f.endswith(("_ade20k.yaml", "_voc12aug.yaml"))
)


@pytest.mark.parametrize("name", MMSEG_CONFIGS)
def test_mmseg_configs_follow_their_names(name):
    from danet.config import load_config

    cfg = load_config(os.path.join(REPO, "configs", "mmseg", f"{name}.yaml"))
    _, backbone, crop, schedule, dataset = name.split("_")
    assert f"r{cfg.MODEL.RESNETS.DEPTH}-d8" == backbone and f"resnet{cfg.MODEL.RESNETS.DEPTH}_v1c" in cfg.MODEL.WEIGHTS
    assert list(cfg.INPUT.CROP.SIZE) == [512, 512] and crop == "512x512"
    assert cfg.SOLVER.MAX_ITER == int(schedule[:-1]) * 1000
    assert cfg.DATASETS.TEST == ({"ade20k": "ade20k_sem_seg_val", "voc12aug": "voc_2012_sem_seg_val"}[dataset],)
    # load_config checked NUM_CLASSES against the dataset's classes.
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == len(MetadataCatalog.get(cfg.DATASETS.TEST[0]).stuff_classes)
