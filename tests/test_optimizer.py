"""SOLVER.HEAD_LR_FACTOR: the head learns at a multiple of the backbone's rate
(danet/engine/optimizer.py), the rest as detectron2's build_optimizer does."""

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.solver import build_optimizer as build_d2_optimizer

from danet.engine import build_optimizer
from danet.errors import InputError
from helpers import scheduled_lr, tiny_cfg
from train_net import Trainer


def settings(optimizer, model):
    """{parameter name: (lr, weight decay, momentum)}."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: (g["lr"], g["weight_decay"], g["momentum"]) for g in optimizer.param_groups for p in g["params"]
    }


def test_head_factor_one_is_detectron2s_optimizer():
    cfg = tiny_cfg("SOLVER.WEIGHT_DECAY_NORM", "0.0", "SOLVER.BIAS_LR_FACTOR", "2.0", "SOLVER.WEIGHT_DECAY_BIAS", "0.0")
    model = build_model(cfg)
    assert settings(build_optimizer(cfg, model), model) == settings(build_d2_optimizer(cfg, model), model)


def test_head_learns_at_its_factor_with_the_bias_factor_too():
    cfg = tiny_cfg("SOLVER.BASE_LR", "0.01", "SOLVER.HEAD_LR_FACTOR", "10.0", "SOLVER.BIAS_LR_FACTOR", "2.0")
    model = build_model(cfg)
    lrs = {name: lr for name, (lr, _, _) in settings(build_optimizer(cfg, model), model).items()}
    assert lrs["backbone.stem.conv1.weight"] == pytest.approx(0.01)
    assert lrs["sem_seg_head.position_branch.0.weight"] == pytest.approx(0.1)
    assert lrs["sem_seg_head.fused_predictor.1.bias"] == pytest.approx(0.2)
    assert lrs["sem_seg_head.position_branch.1.gamma"] == pytest.approx(0.1)
    heads = [lr for name, lr in lrs.items() if name.startswith("sem_seg_head.") and not name.endswith(".bias")]
    assert all(lr == pytest.approx(0.1) for lr in heads) and len(lrs) == len(list(model.parameters()))


def test_the_schedule_keeps_the_ratio():
    cfg = tiny_cfg("SOLVER.HEAD_LR_FACTOR", "10.0", "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.MAX_ITER", "4")
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    lrs = sorted({g["lr"] for g in optimizer.param_groups})
    assert lrs == pytest.approx([scheduled_lr(cfg, 2), 10 * scheduled_lr(cfg, 2)])


def test_a_factor_that_is_not_positive_is_one_line():
    cfg = tiny_cfg("SOLVER.HEAD_LR_FACTOR", "0.0")
    with pytest.raises(InputError, match="SOLVER.HEAD_LR_FACTOR must be positive, got 0.0"):
        build_optimizer(cfg, torch.nn.Linear(1, 1))
