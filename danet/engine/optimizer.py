"""The training optimizer: detectron2's SGD with a learning rate of its own for the head."""

import torch

from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..errors import InputError

HEAD_PREFIX = "sem_seg_head."


def build_optimizer(cfg, model):
    """detectron2's ``build_optimizer`` (SGD, SOLVER.* settings, norm and bias
    overrides, gradient clipping) where the parameters under ``sem_seg_head.``
    learn at ``SOLVER.BASE_LR * SOLVER.HEAD_LR_FACTOR``, as the DANet authors'
    parameter groups (``params_list`` of their train.py) give their head 10x
    the backbone's rate. detectron2's schedules scale every group alike, so the
    ratio holds throughout training; PolyLR with ``SOLVER.POLY_LR_ETA_MIN`` > 0
    (mmseg's) brings every group to that one rate at the end."""
    solver = cfg.SOLVER
    if solver.HEAD_LR_FACTOR <= 0:
        raise InputError(f"SOLVER.HEAD_LR_FACTOR must be positive, got {solver.HEAD_LR_FACTOR}")

    def lr_factor(name):
        # detectron2 applies BIAS_LR_FACTOR as an override that would replace the
        # head factor; folded in here, both apply.
        head = solver.HEAD_LR_FACTOR if name.startswith(HEAD_PREFIX) else 1.0
        return head * (solver.BIAS_LR_FACTOR if name.endswith(".bias") else 1.0)

    params = get_default_optimizer_params(
        model,
        base_lr=solver.BASE_LR,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
        lr_factor_func=lr_factor,
    )
    optimizer = torch.optim.SGD(
        params,
        lr=solver.BASE_LR,
        momentum=solver.MOMENTUM,
        nesterov=solver.NESTEROV,
        weight_decay=solver.WEIGHT_DECAY,
        foreach=True,
    )
    return maybe_add_gradient_clipping(cfg, optimizer)
