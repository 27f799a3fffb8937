"""MODEL.DANET.MEMORY_SAVING* belongs to the model built from the config:
detectron2's build_model honours it, and a copy (copy.deepcopy, pickle)
recomputes with its own weights."""
import copy
import pickle

import torch

from detectron2.modeling import build_model

from danet.modeling import apply_memory_saving
from helpers import tiny_cfg
from test_memory_saving import batch, saved_bytes

SAVING = ("MODEL.DANET.MEMORY_SAVING", "True", "MODEL.DANET.MEMORY_SAVING_CHECKPOINT", '["position_branch"]')


def build(*opts):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.DANET.DROPOUT", "0.0", *opts))
    return model.train()


def build_saving():
    """The model of build(*SAVING), with the savings applied as a separate step
    (the copy tests hold whichever way the model got them)."""
    return apply_memory_saving(build(), tiny_cfg(*SAVING))


def perturb(*weights):
    """Add noise (not a scale, which the following batch norm would undo)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for weight in weights:
            weight.add_(torch.randn(weight.shape, generator=generator))


def training_loss(model):
    return sum(model(batch(0)).values())


def test_build_model_honours_memory_saving():
    assert saved_bytes(build(*SAVING)) < 0.5 * saved_bytes(build())


def test_deepcopy_recomputes_with_the_copys_weights():
    original = build_saving()
    loss = training_loss(original).item()
    duplicate = copy.deepcopy(original)
    # Weights inside checkpointed parts: res4's first block, the position branch.
    perturb(duplicate.backbone.res4[0].conv2.weight, duplicate.sem_seg_head.position_branch[0].weight)
    duplicate_loss = training_loss(duplicate)
    duplicate_loss.backward()
    assert abs(duplicate_loss.item() - loss) > 1e-4
    assert training_loss(original).item() == loss
    # The backward, recomputed, reaches the copy's parameters and only those.
    assert duplicate.backbone.res4[0].conv2.weight.grad is not None
    assert all(p.grad is None for p in original.parameters())
    assert saved_bytes(duplicate) < 0.5 * saved_bytes(build())


def test_pickle_round_trip_keeps_weights_and_savings():
    original = build_saving()
    restored = pickle.loads(pickle.dumps(original))
    assert training_loss(restored).item() == training_loss(original).item()
    assert saved_bytes(restored) == saved_bytes(original)
    perturb(restored.backbone.res5[0].conv1.weight)
    assert training_loss(restored).item() != training_loss(original).item()
