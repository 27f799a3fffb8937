"""A checkpoint that does not fit the config's model ends in one bounded line:
how many tensors, the first few and the likely cause with the option for it."""
import pytest
import torch

from detectron2.modeling import build_model

from danet.checkpoint import CheckpointError, SafeCheckpointer
from danet.engine import build_inference_model
from helpers import save_tiny_weights, tiny_cfg

MAX_CHARS = 400


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pth")


def load_error(weights, *opts):
    with pytest.raises(CheckpointError) as error:
        build_inference_model(tiny_cfg("MODEL.WEIGHTS", weights, *opts))
    message = str(error.value)
    assert "\n" not in message and len(message) < MAX_CHARS, message
    return message


def shape_mismatches(weights, *opts):
    """Keys of the checkpoint whose shape differs from the model of tiny_cfg(*opts), in the model's order."""
    saved = torch.load(weights, weights_only=True)["model"]
    model = build_inference_model(tiny_cfg(*opts), random_init=True).state_dict()
    return [k for k, v in model.items() if k in saved and saved[k].shape != v.shape]


def test_another_backbone_names_the_count_the_first_tensors_and_the_cause(tiny_weights):
    wider = ("MODEL.RESNETS.WIDTH_PER_GROUP", "16")
    mismatches = shape_mismatches(tiny_weights, *wider)
    assert len(mismatches) > 100  # the whole backbone: once listed in full, 11,000 characters
    message = load_error(tiny_weights, *wider)
    assert message.startswith(f"MODEL.WEIGHTS does not fit this model: {len(mismatches)} tensors of other shapes")
    assert f"({mismatches[0]} (8, 32, 1, 1) vs model (16, 32, 1, 1), " in message and mismatches[5] not in message
    assert "another backbone or head config" in message


def test_another_number_of_classes_names_both_and_the_options(tiny_weights):
    message = load_error(tiny_weights, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5")
    assert "sem_seg_head.fused_predictor.1.weight (19, " in message
    assert "19 classes in the checkpoint, 5 in the model: set MODEL.SEM_SEG_HEAD.NUM_CLASSES 19" in message
    assert "MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER True" in message


def test_another_depth_names_the_missing_blocks_with_their_count(tiny_weights):
    saved = torch.load(tiny_weights, weights_only=True)["model"]
    model = build_inference_model(tiny_cfg("MODEL.RESNETS.DEPTH", "101"), random_init=True).state_dict()
    missing = [k for k in model if k not in saved and not k.endswith("num_batches_tracked")]
    message = load_error(tiny_weights, "MODEL.RESNETS.DEPTH", "101")
    assert f"not in the checkpoint: {missing[0]} (+{len(missing) - 1} in backbone.res4)" in message
    assert "MODEL.RESNETS.DEPTH" in message


def test_other_attention_widths_are_not_taken_for_another_number_of_classes(tiny_weights):
    """Position attention's query and key convs of another MODEL.DANET.KEY_REDUCTION differ, as
    classifiers would, only in their number of outputs: only classifiers count as classes."""
    message = load_error(tiny_weights, "MODEL.DANET.KEY_REDUCTION", "4")
    assert "position_branch.1.query.weight (16, 128, 1, 1) vs model (32, 128, 1, 1)" in message
    assert "another backbone or head config" in message and "classes in the checkpoint" not in message


def test_fine_tuning_skips_the_classifiers_only(tiny_weights):
    """With MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER and as many classes as the query width,
    the query and key convs of another width are refused, not left at their initialisation."""
    model = build_model(tiny_cfg("MODEL.DANET.KEY_REDUCTION", "4", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "32"))
    with pytest.raises(CheckpointError, match=r"position_branch\.1\.query\.weight \(16, 128, 1, 1\) vs model"):
        SafeCheckpointer(model, skip_mismatched_classes=32).load(tiny_weights)
    classes_only = build_model(tiny_cfg("MODEL.SEM_SEG_HEAD.NUM_CLASSES", "32"))
    SafeCheckpointer(classes_only, skip_mismatched_classes=32).load(tiny_weights)
