"""demo.py: predictions and pictures for a folder, globs and files, with bad files skipped."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import MetadataCatalog

from helpers import (
    BASE_CONFIG,
    CLASSES,
    COLORS,
    TINY_MODEL_OPTS,
    load_script,
    one_line_error,
    register_toy_dataset,
    save_tiny_weights,
    tiny_cfg,
)

from danet.cli import predict_train_ids

demo = load_script("demo.py")


def write_image(path, height, width, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    write_image(folder / "a.png", 40, 60, 0)
    write_image(folder / "b.jpg", 50, 44, 1)
    (folder / "notes.txt").write_text("not an image, and not in a folder listing")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    extra = tmp_path / "extra"
    extra.mkdir()
    write_image(extra / "c.png", 36, 36, 2)
    write_image(extra / "d.png", 30, 70, 3)
    return tmp_path


def run_demo(inputs, *args, opts=()):
    weights = save_tiny_weights(inputs / "tiny_model.pth")
    output = inputs / "out"
    argv = ["--config-file", BASE_CONFIG, "--output", str(output), *args, "--opts", *TINY_MODEL_OPTS,
            "MODEL.WEIGHTS", weights, *opts]  # fmt: skip
    return demo.main(argv), output


def test_demo_writes_predictions_and_pictures_and_reports_bad_files(inputs, capsys):
    status, output = run_demo(
        inputs,
        "--input",
        str(inputs / "frames"),
        str(inputs / "extra" / "*.png"),
        str(inputs / "frames" / "notes.txt"),
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "Skipped" in err and "broken.png" in err and "notes.txt" in err
    expected = {"a": (40, 60), "b": (50, 44), "c": (36, 36), "d": (30, 70)}
    written = sorted(f"{s}_{kind}.png" for s in expected for kind in ("pred", "vis"))
    assert sorted(os.listdir(output)) == written
    for stem, (height, width) in expected.items():
        pred = Image.open(output / f"{stem}_pred.png")
        assert pred.mode == "L" and pred.size == (width, height)
        train_ids = np.array(pred)
        assert train_ids.max() < 19  # argmax without a threshold always predicts
        vis = np.array(Image.open(output / f"{stem}_vis.png"))
        assert vis.shape[0] >= height and vis.shape[1] > width
        # The legend has a swatch (12x12 pixels) of every class present, and no other
        # (anti-aliased text may reuse a grey class colour on a few pixels).
        legend = vis[:, width:].reshape(-1, 3)
        for i, color in enumerate(COLORS):
            assert ((legend == color).all(axis=1).sum() >= 144) == (i in train_ids), CLASSES[i]
        # The image part is the blend of the image and the class colours.
        image = np.array(Image.open(next((inputs).rglob(f"{stem}.*"))).convert("RGB")).astype(float)
        blend = 0.5 * image + 0.5 * np.array(COLORS)[train_ids]
        assert np.abs(vis[:height, :width] - blend).max() <= 1


def test_demo_succeeds_on_good_inputs_with_tta_and_dataset_metadata(inputs, tmp_path):
    colors = [[10 * i, 255 - 10 * i, 128] for i in range(19)]
    register_toy_dataset(tmp_path / "toy", "toy_demo", num_images=1, colors=colors)
    status, output = run_demo(
        inputs,
        "--input",
        str(inputs / "extra"),
        "--confidence-threshold",
        "0.8",
        opts=["DATASETS.TEST", "('toy_demo',)", "TEST.AUG.ENABLED", "True", "TEST.AUG.SCALES", "(0.75, 1.0)"],
    )
    assert status == 0
    # A random model (its fused classifier starts at Normal(std 0.01), HEAD_INIT mmseg) is
    # rarely 80% sure: most pixels are "nothing predicted",
    # and those are left uncoloured in the picture.
    train_ids = np.array(Image.open(output / "c_pred.png"))
    unsure = train_ids == 255
    assert unsure.mean() > 0.5
    vis = np.array(Image.open(output / "c_vis.png"))[:36, :36]
    image = np.array(Image.open(inputs / "extra" / "c.png"))
    assert (vis[unsure] == image[unsure]).all()
    blend = 0.5 * image[~unsure] + 0.5 * np.array(colors)[train_ids[~unsure]]
    assert np.abs(vis[~unsure] - blend).max() <= 1


def test_predict_train_ids_threshold():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 0.1]]])  # two classes, one row of two pixels
    assert predict_train_ids(logits).tolist() == [[0, 1]]
    # softmax: pixel 0 is 88% class 0, pixel 1 52% class 1.
    assert predict_train_ids(logits, 0.6).tolist() == [[0, 255]]


def test_bad_inputs_end_in_one_line_before_the_model_is_built(inputs, monkeypatch):
    monkeypatch.setattr(demo, "build_inference_model", None)  # never reached
    message = one_line_error(lambda: run_demo(inputs, "--input", str(inputs / "missing" / "*.png")))
    assert message.startswith(f"demo.py: error: --input '{inputs / 'missing' / '*.png'}': no such file")
    (inputs / "extra" / "a.png").write_bytes((inputs / "frames" / "a.png").read_bytes())
    message = one_line_error(lambda: run_demo(inputs, "--input", str(inputs / "frames"), str(inputs / "extra")))
    assert "would write the same outputs" in message
    with pytest.raises(ValueError, match="MODEL.SEM_SEG_HEAD.NUM_CLASSES is 5 .* has 19 classes"):
        demo.class_names_and_colors(tiny_cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 5))


def test_class_names_and_colours_follow_the_dataset():
    MetadataCatalog.get("toy_two_classes").set(stuff_classes=["sea", "sky"], stuff_colors=[[0, 0, 255], [9, 9, 9]])
    cfg = tiny_cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 2, "DATASETS.TEST", ("toy_two_classes",))
    names, colors = demo.class_names_and_colors(cfg)
    assert names == ["sea", "sky"] and colors.tolist() == [[0, 0, 255], [9, 9, 9]]
    # Without metadata: numbered classes in the PASCAL palette, never Cityscapes' names.
    cfg = tiny_cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 3, "DATASETS.TEST", (), "DATASETS.TRAIN", ("no_metadata",))
    names, colors = demo.class_names_and_colors(cfg)
    assert names == ["class 0", "class 1", "class 2"]
    assert colors.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]


def test_ground_truth_comparison_for_cityscapes_layout(inputs):
    city = inputs / "cityscapes" / "leftImg8bit" / "val" / "lindau"
    gt_city = inputs / "cityscapes" / "gtFine" / "val" / "lindau"
    city.mkdir(parents=True)
    gt_city.mkdir(parents=True)
    write_image(city / "lindau_000000_000019_leftImg8bit.png", 32, 48, 4)
    write_image(city / "lindau_000001_000019_leftImg8bit.png", 32, 48, 5)  # no ground truth
    gt = np.full((32, 48), 13, np.uint8)  # car
    gt[:4] = 255
    Image.fromarray(gt).save(gt_city / "lindau_000000_000019_gtFine_labelTrainIds.png")

    status, output = run_demo(inputs, "--ground-truth", "--input", str(city))
    assert status == 1  # the second image has no ground truth
    picture = np.array(Image.open(output / "lindau_000000_000019_leftImg8bit_compare.png"))
    assert picture.shape == (32, 3 * 48 + 2 * 4, 3)
    assert (picture[4:, 52:100] == COLORS[13]).all() and (picture[:4, 52:100] == 0).all()
    prediction = np.array(Image.open(output / "lindau_000000_000019_leftImg8bit_pred.png"))
    assert (picture[:, 104:] == np.array(COLORS)[prediction]).all()
    assert not (output / "lindau_000001_000019_leftImg8bit_compare.png").exists()
