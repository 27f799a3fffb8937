"""Your own data: a folder of images and label PNGs plus classes.yaml, trained
and evaluated from the command line; each bad input stops with one line naming the file."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser

import train_net
from danet.config import load_config
from danet.errors import InputError
from helpers import BASE_CONFIG, REPO, TINY_MODEL_OPTS

spec = importlib.util.spec_from_file_location("demo", os.path.join(REPO, "demo.py"))
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)

CLASSES = ["background", "road", "car"]
COLORS = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]
# A few CPU iterations on 48x64 images.
TRAIN_OPTS = TINY_MODEL_OPTS + [
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
    "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.CROP.SIZE", "(48, 48)",
]  # fmt: skip


def make_folder_dataset(root, splits=("train", "val"), num_images=2, size=(48, 64), classes=CLASSES, seed=0):
    """images/<split>/*.jpg and labels/<split>/*.png (random ids, some 255) with classes.yaml."""
    rng = np.random.default_rng(seed)
    for split in splits:
        os.makedirs(root / "images" / split, exist_ok=True)
        os.makedirs(root / "labels" / split, exist_ok=True)
        for i in range(num_images):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            label = rng.integers(0, len(classes), size).astype(np.uint8)
            label[rng.random(size) < 0.1] = 255
            Image.fromarray(image).save(root / "images" / split / f"{split}_{i}.jpg")
            Image.fromarray(label).save(root / "labels" / split / f"{split}_{i}.png")
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": classes, "colors": COLORS[: len(classes)]}))
    return root


def folder_opts(root, name):
    return [
        "DATASETS.CUSTOM.ROOT", str(root), "DATASETS.CUSTOM.NAME", name,
        "DATASETS.TRAIN", f"('{name}_sem_seg_train',)", "DATASETS.TEST", f"('{name}_sem_seg_val',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3",
    ]  # fmt: skip


def run_train_net(*argv):
    return train_net.main(default_argument_parser().parse_args(list(argv)))


def write_config(path, root, name):
    """The README's YAML for your own data (on the base config instead of r50.yaml: no download)."""
    path.write_text(
        f"_BASE_: {BASE_CONFIG}\n"
        "DATASETS:\n"
        f"  CUSTOM:\n    ROOT: {root}\n"
        f"  TRAIN: (\"{name}_sem_seg_train\",)\n"
        f"  TEST: (\"{name}_sem_seg_val\",)\n"
        "MODEL:\n  SEM_SEG_HEAD:\n    NUM_CLASSES: 3\n"
    )
    return str(path)


def test_train_then_evaluate_a_folder_dataset_from_the_command_line(tmp_path):
    root = make_folder_dataset(tmp_path / "my_data")
    config = write_config(tmp_path / "my_data.yaml", root, "my_data")
    output = tmp_path / "output"
    opts = TRAIN_OPTS + ["OUTPUT_DIR", str(output)]
    run_train_net("--config-file", config, *opts)
    assert (output / "model_final.pth").is_file()

    results = run_train_net("--config-file", config, "--eval-only", *opts, "MODEL.WEIGHTS", str(output / "model_final.pth"))
    assert 0 <= results["sem_seg"]["mIoU"] <= 100
    assert {f"IoU-{name}" for name in CLASSES} <= set(results["sem_seg"])
    with open(output / "inference" / "sem_seg_per_class.json") as f:
        assert [row["class"] for row in json.load(f)["classes"]] == CLASSES
    meta = MetadataCatalog.get("my_data_sem_seg_val")
    assert meta.stuff_classes == CLASSES and meta.stuff_colors == COLORS and meta.ignore_label == 255
    records = DatasetCatalog.get("my_data_sem_seg_train")
    assert [os.path.basename(r["file_name"]) for r in records] == ["train_0.jpg", "train_1.jpg"]
    assert all(r["height"] == 48 and r["width"] == 64 for r in records)
    # demo.py names and colours the classes from classes.yaml.
    names, colors = demo.class_names_and_colors(load_config(config))
    assert names == CLASSES and colors.tolist() == COLORS


def test_classes_from_the_config_replace_the_file(tmp_path):
    root = make_folder_dataset(tmp_path / "cfg_classes")
    (root / "classes.yaml").unlink()
    opts = folder_opts(root, "cfg_classes") + ["DATASETS.CUSTOM.CLASSES", "['sky', 'sea', 'boat']"]
    load_config(BASE_CONFIG, opts)  # registers both splits
    meta = MetadataCatalog.get("cfg_classes_sem_seg_train")
    assert meta.stuff_classes == ["sky", "sea", "boat"]
    assert meta.stuff_colors == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]  # the PASCAL palette
    with pytest.raises(InputError, match=r"^DATASETS.CUSTOM: colour \[0, 0, 300\] is not \[R, G, B\]"):
        load_config(BASE_CONFIG, opts + ["DATASETS.CUSTOM.COLORS", "[[0, 0, 0], [0, 0, 1], [0, 0, 300]]"])


def load_error(root, name, *opts):
    """The InputError of loading the config and the dataset, as train_net.py does."""
    with pytest.raises(InputError) as error:
        load_config(BASE_CONFIG, folder_opts(root, name) + ["DATASETS.TEST", "()", *opts])
        DatasetCatalog.get(f"{name}_sem_seg_train")
    message = str(error.value)
    assert len(message.splitlines()) == 1
    return message


def test_num_classes_is_checked_against_the_class_list(tmp_path):
    root = make_folder_dataset(tmp_path / "nc", splits=("train",))
    message = load_error(root, "nc", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "19")
    assert "MODEL.SEM_SEG_HEAD.NUM_CLASSES is 19" in message and "3 classes" in message
    assert str(root / "classes.yaml") in message


def test_label_ids_beyond_the_classes(tmp_path):
    root = make_folder_dataset(tmp_path / "ids", splits=("train",))
    label = root / "labels" / "train" / "train_1.png"
    Image.fromarray(np.full((48, 64), 7, np.uint8)).save(label)
    message = load_error(root, "ids")
    assert str(label) in message and "[7]" in message and "3 classes" in message


def test_label_and_image_of_different_sizes(tmp_path):
    root = make_folder_dataset(tmp_path / "size", splits=("train",))
    label = root / "labels" / "train" / "train_0.png"
    Image.fromarray(np.zeros((40, 64), np.uint8)).save(label)
    message = load_error(root, "size")
    assert str(label) in message and "64x40" in message and "64x48" in message


def test_image_without_a_label(tmp_path):
    root = make_folder_dataset(tmp_path / "nolabel", splits=("train",))
    (root / "labels" / "train" / "train_1.png").unlink()
    message = load_error(root, "nolabel")
    assert str(root / "images" / "train" / "train_1.jpg") in message and "has no label" in message


def test_rgb_colour_labels_are_refused_and_converted_from_the_colour_list(tmp_path):
    root = make_folder_dataset(tmp_path / "rgb", splits=("train",))
    label_file = root / "labels" / "train" / "train_0.png"
    ids = np.array(Image.open(label_file))
    ids[ids == 255] = 0
    Image.fromarray(np.array(COLORS, np.uint8)[ids]).save(label_file)
    message = load_error(root, "rgb")
    assert str(label_file) in message and "convert_color_labels.py --root" in message

    script = os.path.join(REPO, "datasets", "convert_color_labels.py")
    done = subprocess.run([sys.executable, script, "--root", str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "converted 1" in done.stdout
    converted = Image.open(label_file)
    assert converted.mode == "L" and (np.array(converted) == ids).all()
    load_config(BASE_CONFIG, folder_opts(root, "rgb") + ["DATASETS.TEST", "()"])
    assert len(DatasetCatalog.get("rgb_sem_seg_train")) == 2


def test_unknown_colour_is_named_by_the_converter(tmp_path):
    root = make_folder_dataset(tmp_path / "unknown", splits=("train",))
    label_file = root / "labels" / "train" / "train_0.png"
    Image.fromarray(np.full((48, 64, 3), 9, np.uint8)).save(label_file)
    script = os.path.join(REPO, "datasets", "convert_color_labels.py")
    done = subprocess.run([sys.executable, script, "--root", str(root)], capture_output=True, text=True)
    assert done.returncode == 1
    assert str(label_file) in done.stderr and "[[9, 9, 9]]" in done.stderr
    assert Image.open(label_file).mode == "RGB"  # left as it was


@pytest.mark.parametrize(
    "classes_yaml, expected",
    [
        ("colors: [[0, 0, 0]]\n", "needs a non-empty list `classes"),
        ("classes: [a, b, c]\ncolors: [[0, 0, 0]]\n", "1 colors for 3 classes"),
        ("classes: [a, b, c]\nignore_label: 1\n", "ignore_label 1 is also a class id"),
        ("classes: [a, b, c]\ncolours: []\n", "unknown keys ['colours']"),
    ],
)
def test_bad_classes_file_is_named(tmp_path, classes_yaml, expected):
    root = make_folder_dataset(tmp_path / "badclasses", splits=("train",))
    (root / "classes.yaml").write_text(classes_yaml)
    message = load_error(root, "badclasses")
    assert str(root / "classes.yaml") in message and expected in message


def test_command_line_error_is_one_line(tmp_path):
    root = make_folder_dataset(tmp_path / "cli", splits=("train",))
    (root / "labels" / "train" / "train_0.png").unlink()
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", BASE_CONFIG,
         *TINY_MODEL_OPTS, *folder_opts(root, "cli"), "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train_net.py: error: ") and "train_0.jpg has no label" in last


def test_phone_photo_rotated_by_exif_is_measured_upright(tmp_path):
    root = make_folder_dataset(tmp_path / "exif", splits=("train",))
    photo = root / "images" / "train" / "train_0.jpg"
    stored = Image.fromarray(np.zeros((64, 48, 3), np.uint8))  # stored 48x64, shown 64x48
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    stored.save(photo, exif=exif)
    load_config(BASE_CONFIG, folder_opts(root, "exif") + ["DATASETS.TEST", "()"])
    record = DatasetCatalog.get("exif_sem_seg_train")[0]
    assert (record["height"], record["width"]) == (48, 64)
