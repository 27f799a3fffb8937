"""Evaluation and prediction build their model one way (danet/engine/inference.py):
the device is checked first, and weights that do not give every weight of the
model end in one line instead of predicting with a random head. Training may
still fine-tune to another number of classes when asked to."""
import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.engine import default_argument_parser, defaults
from detectron2.modeling import build_model

from danet.checkpoint import CheckpointError
from danet.engine import trainer_defaults
from helpers import BASE_CONFIG, TINY_MODEL_OPTS, load_script, one_line_error, register_toy_dataset, save_tiny_weights, tiny_cfg


demo = load_script("demo.py")
train_net = load_script("train_net.py")
analyze_model = load_script("tools/analyze_model.py")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return str(path)


def run_demo(image, tmp_path, *opts):
    argv = ["--config-file", BASE_CONFIG, "--input", image, "--output", str(tmp_path / "out"),
            "--opts", *TINY_MODEL_OPTS, *opts]  # fmt: skip
    return demo.main(argv)


def test_demo_refuses_a_checkpoint_of_other_classes(image, tmp_path):
    seven = save_tiny_weights(tmp_path / "seven.pth", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 7)
    message = one_line_error(lambda: run_demo(image, tmp_path, "MODEL.WEIGHTS", seven))
    assert message.startswith("demo.py: error: MODEL.WEIGHTS does not fit this model")
    assert "sem_seg_head.fused_predictor.1.weight (7, " in message
    assert not (tmp_path / "out" / "frame_pred.png").exists()


def test_demo_without_weights_says_none_were_given(image, tmp_path):
    message = one_line_error(lambda: run_demo(image, tmp_path))
    assert message == (
        "demo.py: error: No weights were given (MODEL.WEIGHTS is empty): set MODEL.WEIGHTS to a "
        "trained checkpoint, a file or URL, to evaluate or predict"
    )


def test_demo_predicts_with_complete_weights_as_the_model_does(image, tmp_path):
    """The predictor feeds the model what the test loader feeds it: RGB
    (INPUT.FORMAT) uint8, resized to INPUT.MIN_SIZE_TEST with OpenCV as mmcv
    does; logits at the image size."""
    weights = save_tiny_weights(tmp_path / "tiny.pth")
    assert run_demo(image, tmp_path, "MODEL.WEIGHTS", weights) == 0
    model = build_model(tiny_cfg()).eval()
    model.load_state_dict(torch.load(weights, weights_only=True)["model"])
    rgb = np.array(Image.open(image))
    resized = cv2.resize(rgb, (67, 48), interpolation=cv2.INTER_LINEAR)  # short side 40 -> 48
    with torch.no_grad():
        logits = model([{"image": torch.as_tensor(resized).permute(2, 0, 1), "height": 40, "width": 56}])
    expected = logits[0]["sem_seg"].argmax(0).numpy()
    assert (np.array(Image.open(tmp_path / "out" / "frame_pred.png")) == expected).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_one_line_before_the_model_is_built(image, tmp_path, monkeypatch):
    def build_model_is_heavy(cfg):
        raise AssertionError("the model was built before the device was checked")

    monkeypatch.setattr("danet.engine.inference.build_model", build_model_is_heavy)
    weights = save_tiny_weights(tmp_path / "tiny.pth")
    expected = "MODEL.DEVICE is 'cuda' but no CUDA device is available: add `MODEL.DEVICE cpu` to the command line."
    message = one_line_error(lambda: run_demo(image, tmp_path, "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cuda"))
    assert message == f"demo.py: error: {expected}"
    argv = ["--config-file", BASE_CONFIG, "--size", "32", "32", *TINY_MODEL_OPTS, "MODEL.DEVICE", "cuda"]
    assert one_line_error(lambda: analyze_model.main(argv)) == f"analyze_model.py: error: {expected}"


def test_eval_only_with_a_backbone_only_checkpoint_names_the_head_weights(tmp_path):
    register_toy_dataset(tmp_path / "data", "toy_backbone_only", num_images=1)
    model = build_model(tiny_cfg())
    backbone_only = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": backbone_only}, tmp_path / "backbone.pth")
    args = default_argument_parser().parse_args(
        ["--config-file", BASE_CONFIG, "--eval-only", *TINY_MODEL_OPTS,
         "MODEL.WEIGHTS", str(tmp_path / "backbone.pth"), "DATASETS.TEST", "('toy_backbone_only',)",
         "OUTPUT_DIR", str(tmp_path / "output")]
    )  # fmt: skip
    message = one_line_error(lambda: train_net.main(args))
    assert message.startswith(
        "train_net.py: error: MODEL.WEIGHTS lacks weights of this model (not in the checkpoint: "
        "sem_seg_head.position_branch.0.weight (+"
    )
    for module in ("position_branch", "channel_branch", "fused_predictor"):
        assert f" in sem_seg_head.{module})" in message
    assert not (tmp_path / "output" / "inference").exists()


def test_fine_tuning_to_other_classes_skips_only_the_classifiers(tmp_path, caplog):
    nineteen = save_tiny_weights(tmp_path / "nineteen.pth")
    saved = torch.load(nineteen, weights_only=True)["model"]
    cfg = tiny_cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 7)

    def load_for_training(cfg):
        model = build_model(cfg)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        with trainer_defaults(cfg):  # what DefaultTrainer builds its checkpointer with
            defaults.DetectionCheckpointer(model, str(tmp_path)).load(nineteen)
        return initial, model.state_dict()

    with pytest.raises(CheckpointError, match="MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER True"):
        load_for_training(cfg)

    cfg.MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER = True
    with caplog.at_level(logging.WARNING):
        initial, loaded = load_for_training(cfg)
    classifiers = {k for k in loaded if k.endswith(("predictor.1.weight", "predictor.1.bias"))}
    assert len(classifiers) == 6
    for key, tensor in loaded.items():
        expected = initial[key] if key in classifiers else saved[key]
        assert torch.equal(tensor, expected), key
    skipped = [r.getMessage() for r in caplog.records if "WEIGHTS_SKIP_MISMATCHED_CLASSIFIER" in r.getMessage()]
    assert len(skipped) == 6 and "sem_seg_head.fused_predictor.1.weight (19, " in " ".join(skipped)
