"""ONNX and TorchScript exports give PyTorch's logits at two image sizes
through one graph, with either MODEL.DANET.ALIGN_CORNERS; the runner computes
what the PyTorch inference computes, whole or window by window, and writes
demo.py's pictures; export needs complete weights; unexportable options fail
in one line."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from helpers import BASE_CONFIG, TINY_MODEL_OPTS, load_script, one_line_error, tiny_cfg

from danet.engine import SegmentationPredictor
from danet.export import ExportedModel, segment_image
from danet.modeling import build_test_time_segmentor

pytest.importorskip("onnxruntime")

export_tool = load_script("tools/export_model.py")
runner = load_script("tools/segment_exported.py")
demo = load_script("demo.py")

SIZES = ((64, 96), (80, 56))
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny model with trained-looking weights, saved as a checkpoint and
    exported from MODEL.WEIGHTS to both formats, with MODEL.DANET.ALIGN_CORNERS
    False and True.

    Attention is switched on (gamma is 0 at init) and BN statistics are those
    of the activations. At random init, a 50-layer ResNet amplifies float32
    rounding to about 1e-4 of the logits (against float64), the tolerance
    itself; damped residual branches, as in trained ResNets, bring that floor
    to about 1e-6, so the tolerance measures the export and not the rounding.
    Returns (weights file, {(format, align_corners): model file}).
    """
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in batch_norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    with torch.no_grad():
        model([{"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8),
                "sem_seg": torch.randint(0, 19, (64, 96))} for _ in range(4)])  # fmt: skip
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.fill_(0.7)
            elif name.endswith("conv3.norm.weight"):  # the last BN of each bottleneck's residual branch
                param.mul_(0.3)
    DetectionCheckpointer(model, save_dir=str(root)).save("weights")
    weights = str(root / "weights.pth")
    paths = {}
    for fmt in ("onnx", "torchscript"):
        for align_corners in (False, True):
            output = root / f"{fmt}_{align_corners}"
            argv = ["--config-file", BASE_CONFIG, "--format", fmt, "--output", str(output), "--size", "48", "64"]
            opts = [*TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights, "MODEL.DANET.ALIGN_CORNERS", str(align_corners)]
            assert export_tool.main([*argv, "--opts", *opts]) == 0
            paths[fmt, align_corners] = str(output / MODEL_FILES[fmt])
    return weights, paths


def pytorch_model(weights, *opts):
    cfg = tiny_cfg("MODEL.WEIGHTS", weights, *opts)
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(weights)
    return cfg, model


def pytorch_logits(weights, images, align_corners):
    _, model = pytorch_model(weights, "MODEL.DANET.ALIGN_CORNERS", align_corners)
    with torch.no_grad():
        return torch.stack([model([{"image": torch.from_numpy(image)}])[0]["sem_seg"] for image in images])


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_at_two_sizes(exported, fmt, align_corners):
    weights, paths = exported
    model = ExportedModel(paths[fmt, align_corners])
    rng = np.random.default_rng(0)
    for height, width in SIZES:
        images = rng.integers(0, 256, (2, 3, height, width), dtype=np.uint8)
        expected = pytorch_logits(weights, images, align_corners)
        logits = model(images)
        assert logits.shape == expected.shape == (2, 19, height, width)
        error = relative_error(logits, expected)
        assert error <= 1e-4, (fmt, height, width, error)
        agreement = (logits.argmax(1) == expected.argmax(1)).float().mean().item()
        assert agreement >= 0.9999, (fmt, height, width, agreement)


@pytest.mark.parametrize("window", [None, (32, 48)], ids=["whole", "window"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_runner_computes_the_pytorch_inference(exported, fmt, align_corners, window):
    """demo.py's PyTorch route (test resize, TEST.SLIDING_WINDOW, logits back
    to the image size) against the runner on the exported graph. The image is
    resized (60x100 -> 48x80), so the resize back counts; 769x769 configs use
    ALIGN_CORNERS True."""
    weights, paths = exported
    image = np.random.default_rng(2).integers(0, 256, (60, 100, 3), dtype=np.uint8)
    stride = (16, 32) if window else None
    window_opts = ["TEST.SLIDING_WINDOW.ENABLED", True, "TEST.SLIDING_WINDOW.CROP_SIZE", window,
                   "TEST.SLIDING_WINDOW.STRIDE", stride] if window else []  # fmt: skip
    cfg, model = pytorch_model(weights, "MODEL.DANET.ALIGN_CORNERS", align_corners, *window_opts)
    expected = SegmentationPredictor(cfg, build_test_time_segmentor(cfg, model))(image)
    exported_model = ExportedModel(paths[fmt, align_corners])
    assert exported_model.metadata["align_corners"] is align_corners
    logits = segment_image(exported_model, image, window, stride)
    assert logits.shape == expected.shape == (19, 60, 100)
    assert relative_error(logits, expected) <= 1e-4
    if window:
        whole = segment_image(exported_model, image)
        assert not torch.allclose(whole, logits, atol=1e-3), "the window must change global attention's result"


def test_runner_writes_demo_pictures(exported, tmp_path):
    weights, paths = exported
    image = np.random.default_rng(1).integers(0, 256, (60, 100, 3), dtype=np.uint8)  # resized to 48x80
    Image.fromarray(image).save(tmp_path / "frame.png")
    opts = [*TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights]
    inputs = ["--input", str(tmp_path / "frame.png")]
    assert demo.main(["--config-file", BASE_CONFIG, *inputs, "--output", str(tmp_path / "demo"), "--opts", *opts]) == 0
    assert runner.main(["--model", paths["onnx", False], *inputs, "--output", str(tmp_path / "onnx")]) == 0
    expected = np.array(Image.open(tmp_path / "demo" / "frame_pred.png"))
    predicted = np.array(Image.open(tmp_path / "onnx" / "frame_pred.png"))
    assert predicted.shape == expected.shape == (60, 100)
    assert (predicted == expected).mean() >= 0.999
    expected_vis = np.array(Image.open(tmp_path / "demo" / "frame_vis.png"))
    vis = np.array(Image.open(tmp_path / "onnx" / "frame_vis.png"))
    assert vis.shape == expected_vis.shape
    # The same class colours and legend (model.json's names and colours are demo.py's).
    assert np.abs(vis[:, 100:].astype(int) - expected_vis[:, 100:]).mean() < 2


def test_runner_refuses_an_export_without_the_settings_it_needs(exported, tmp_path):
    """An export of an earlier release lacks align_corners: guessing it would
    silently change the 769x769 configs' results."""
    _, paths = exported
    shutil.copy(paths["torchscript", True], tmp_path / "model.ts")
    with open(os.path.join(os.path.dirname(paths["torchscript", True]), "model.json")) as f:
        metadata = json.load(f)
    del metadata["align_corners"]
    (tmp_path / "model.json").write_text(json.dumps(metadata))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "frame.png")
    argv = ["--model", str(tmp_path / "model.ts"), "--input", str(tmp_path / "frame.png"), "--output", str(tmp_path / "out")]
    message = one_line_error(lambda: runner.main(argv))
    assert message == (
        f"segment_exported.py: error: {tmp_path / 'model.json'} lacks align_corners: export the model again "
        "with tools/export_model.py"
    )


def test_runner_names_a_model_json_that_is_not_json(exported, tmp_path):
    _, paths = exported
    shutil.copy(paths["torchscript", True], tmp_path / "model.ts")
    (tmp_path / "model.json").write_text('{"format": "torchscript", ')  # cut short
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "frame.png")
    argv = ["--model", str(tmp_path / "model.ts"), "--input", str(tmp_path / "frame.png"), "--output", str(tmp_path / "out")]
    message = one_line_error(lambda: runner.main(argv))
    assert message.startswith(f"segment_exported.py: error: {tmp_path / 'model.json'} is not the JSON tools/export_model.py writes (")
    assert message.endswith("): export the model again")


def export_argv(output, *opts, flags=()):
    return ["--config-file", BASE_CONFIG, "--format", "torchscript", "--output", str(output), "--size", "48", "64",
            *flags, *TINY_MODEL_OPTS, *opts]  # fmt: skip


def test_export_refuses_a_checkpoint_without_the_head(exported, tmp_path):
    """configs/r50.yaml's default MODEL.WEIGHTS is an ImageNet backbone: an
    export of it would ship a random head."""
    weights, _ = exported
    state = torch.load(weights, weights_only=False)["model"]
    backbone_only = str(tmp_path / "backbone.pth")
    torch.save({"model": {k: v for k, v in state.items() if k.startswith("backbone.")}}, backbone_only)
    message = one_line_error(lambda: export_tool.main(export_argv(tmp_path / "out", "MODEL.WEIGHTS", backbone_only)))
    assert message.startswith("export_model.py: error: MODEL.WEIGHTS lacks weights of this model")
    assert "sem_seg_head" in message
    assert not os.path.exists(tmp_path / "out" / "model.ts")


def test_export_refuses_empty_weights_unless_random_weights_are_asked_for(tmp_path, capsys):
    message = one_line_error(lambda: export_tool.main(export_argv(tmp_path / "out")))
    assert message.startswith("export_model.py: error: No weights were given (MODEL.WEIGHTS is empty)")
    assert not os.path.exists(tmp_path / "out" / "model.ts")
    assert export_tool.main(export_argv(tmp_path / "out", flags=["--random-weights"])) == 0
    assert "weights are random" in capsys.readouterr().out
    with open(tmp_path / "out" / "model.json") as f:
        assert json.load(f)["weights"] is None


@pytest.mark.parametrize(
    "args, opts, message",
    [
        (["--format", "tflite"], [], "--format must be one of onnx, torchscript, got 'tflite'"),
        (["--format", "onnx", "--size", "0", "64"], [], "--size must be two positive integers H W"),
        (["--format", "onnx", "--attention-impl", "chunked"], [], "--attention-impl 'chunked' cannot be exported"),
        (["--format", "torchscript"], ["TEST.AUG.ENABLED", "True"], "TEST.AUG.ENABLED is True"),
    ],
)
def test_unexportable_options_fail_in_one_line(tmp_path, capsys, args, opts, message):
    argv = ["--config-file", BASE_CONFIG, "--output", str(tmp_path), *args, "--opts", *TINY_MODEL_OPTS, *opts]
    with pytest.raises(SystemExit) as exit_info:
        export_tool.main(argv)
    error = str(exit_info.value)
    assert error.startswith("export_model.py: error: ") and message in error and "\n" not in error
    assert not os.listdir(tmp_path)
