"""datasets/prepare_cityscapes.py: conversion, skipping, and the bad-input cases."""
import glob
import os
import subprocess
import sys

import pytest

from helpers import REPO


def run(script, *args, env=None):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "datasets", script), *map(str, args)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip


@pytest.fixture
def toy_root(tmp_path):
    root = tmp_path / "cityscapes"
    done = run("make_toy_cityscapes.py", "--out", root, "--width", 96, "--height", 48, "--train", 3, "--val", 2)
    assert done.returncode == 0, done.stderr
    return root


def train_ids(root):
    return sorted(glob.glob(f"{root}/gtFine/*/*/*_gtFine_labelTrainIds.png"))


def test_converts_every_split_then_skips_up_to_date_files(toy_root):
    done = run("prepare_cityscapes.py", "--root", toy_root)
    assert done.returncode == 0, done.stderr
    assert "converted 5, skipped 0" in done.stdout and "train, val" in done.stdout
    assert len(train_ids(toy_root)) == 5

    again = run("prepare_cityscapes.py", "--root", toy_root)
    assert "converted 0, skipped 5" in again.stdout

    # A newer annotation is converted again, and --force converts everything.
    json_file = sorted(glob.glob(f"{toy_root}/gtFine/val/*/*_polygons.json"))[0]
    later = os.path.getmtime(train_ids(toy_root)[0]) + 10
    os.utime(json_file, (later, later))
    assert "converted 1, skipped 4" in run("prepare_cityscapes.py", "--root", toy_root).stdout
    assert "converted 5, skipped 0" in run("prepare_cityscapes.py", "--root", toy_root, "--force").stdout


def test_default_root_is_detectron2_datasets_cityscapes(toy_root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(toy_root.parent))
    done = run("prepare_cityscapes.py", env=env)
    assert done.returncode == 0, done.stderr
    assert len(train_ids(toy_root)) == 5


def test_missing_root_names_the_path_and_how_to_point_elsewhere(tmp_path):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    done = run("prepare_cityscapes.py", env=env)
    assert done.returncode != 0
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "cityscapes") in message and "--root" in message and "DETECTRON2_DATASETS" in message


def test_root_without_gtfine_is_refused(tmp_path):
    done = run("prepare_cityscapes.py", "--root", tmp_path)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert "gtFine" in done.stderr and str(tmp_path) in done.stderr


def test_malformed_json_is_named_and_the_others_still_convert(toy_root):
    broken = sorted(glob.glob(f"{toy_root}/gtFine/train/*/*_polygons.json"))[1]
    with open(broken, "w") as f:
        f.write('{"imgHeight": 48, "objects": [')
    done = run("prepare_cityscapes.py", "--root", toy_root)
    assert done.returncode != 0
    assert broken in done.stderr
    assert "converted 4, skipped 0" in done.stdout and "failed 1" in done.stdout
    assert len(train_ids(toy_root)) == 4
    assert not glob.glob(f"{toy_root}/gtFine/*/*/*.tmp.png")
