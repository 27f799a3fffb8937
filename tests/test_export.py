"""ONNX and TorchScript exports give PyTorch's logits at two image sizes
through one graph; the runner writes demo.py's pictures; unexportable options
fail in one line."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from helpers import BASE_CONFIG, REPO, TINY_MODEL_OPTS, tiny_cfg

from danet.export import ExportedModel, segment_image
from danet.modeling import SemanticSegmentorWithTTA

pytest.importorskip("onnxruntime")


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, *name.split("/")) + ".py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_tool = load_tool("tools/export_model")
runner = load_tool("tools/segment_exported")
demo = load_tool("demo")

SIZES = ((64, 96), (80, 56))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny model with trained-looking weights, saved as a checkpoint and
    exported from MODEL.WEIGHTS to both formats.

    Attention is switched on (gamma is 0 at init) and BN statistics are those
    of the activations. At random init, a 50-layer ResNet amplifies float32
    rounding to about 1e-4 of the logits (against float64), the tolerance
    itself; damped residual branches, as in trained ResNets, bring that floor
    to about 1e-6, so the tolerance measures the export and not the rounding.
    Returns (weights file, {format: model file}).
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
        argv = ["--config-file", BASE_CONFIG, "--format", fmt, "--output", str(root / fmt), "--size", "48", "64"]
        assert export_tool.main([*argv, "--opts", *TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights]) == 0
        paths[fmt] = str(root / fmt / ("model.onnx" if fmt == "onnx" else "model.ts"))
    return weights, paths


def pytorch_logits(weights, images):
    model = build_model(tiny_cfg("MODEL.WEIGHTS", weights)).eval()
    DetectionCheckpointer(model).load(weights)
    with torch.no_grad():
        return torch.stack([model([{"image": torch.from_numpy(image)}])[0]["sem_seg"] for image in images])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_at_two_sizes(exported, fmt):
    weights, paths = exported
    model = ExportedModel(paths[fmt])
    rng = np.random.default_rng(0)
    for height, width in SIZES:
        images = rng.integers(0, 256, (2, 3, height, width), dtype=np.uint8)
        expected = pytorch_logits(weights, images)
        logits = model(images)
        assert logits.shape == expected.shape == (2, 19, height, width)
        relative_error = ((logits - expected).abs().max() / expected.abs().max()).item()
        assert relative_error <= 1e-4, (fmt, height, width, relative_error)
        agreement = (logits.argmax(1) == expected.argmax(1)).float().mean().item()
        assert agreement >= 0.9999, (fmt, height, width, agreement)


def test_runner_writes_demo_pictures(exported, tmp_path):
    weights, paths = exported
    image = np.random.default_rng(1).integers(0, 256, (60, 100, 3), dtype=np.uint8)  # resized to 48x80
    Image.fromarray(image).save(tmp_path / "frame.png")
    opts = [*TINY_MODEL_OPTS, "MODEL.WEIGHTS", weights]
    inputs = ["--input", str(tmp_path / "frame.png")]
    assert demo.main(["--config-file", BASE_CONFIG, *inputs, "--output", str(tmp_path / "demo"), "--opts", *opts]) == 0
    assert runner.main(["--model", paths["onnx"], *inputs, "--output", str(tmp_path / "onnx")]) == 0
    expected = np.array(Image.open(tmp_path / "demo" / "frame_pred.png"))
    predicted = np.array(Image.open(tmp_path / "onnx" / "frame_pred.png"))
    assert predicted.shape == expected.shape == (60, 100)
    assert (predicted == expected).mean() >= 0.999
    vis = np.array(Image.open(tmp_path / "onnx" / "frame_vis.png"))
    assert vis.shape == np.array(Image.open(tmp_path / "demo" / "frame_vis.png")).shape


def test_sliding_window_matches_pytorch(exported):
    """Window by window, the runner averages like TEST.SLIDING_WINDOW."""
    weights, paths = exported
    image = np.random.default_rng(2).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    logits = segment_image(ExportedModel(paths["torchscript"]), image, window=(48, 48), stride=(32, 32))
    model = build_model(tiny_cfg("MODEL.WEIGHTS", weights)).eval()
    DetectionCheckpointer(model).load(weights)
    windowed = SemanticSegmentorWithTTA(model, crop_size=(48, 48), stride=(32, 32))
    with torch.no_grad():
        expected = windowed([{"image": torch.from_numpy(image.transpose(2, 0, 1).copy())}])[0]["sem_seg"]
    assert ((logits - expected).abs().max() / expected.abs().max()).item() <= 1e-4
    whole = segment_image(ExportedModel(paths["torchscript"]), image)
    assert not torch.allclose(whole, logits, atol=1e-3), "the window must change global attention's result"


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
