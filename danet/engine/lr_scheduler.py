"""The learning-rate schedules of SOLVER.LR_SCHEDULER_NAME, and how they resume.

Every schedule here is a function of the iteration, its parameters taken from
the config the run starts with. A checkpoint keeps only the iteration counter
and the base rates, so ``--resume`` with another ``SOLVER.MAX_ITER`` (a common
way to train longer) continues on the new schedule: from the checkpoint's
iteration on, the learning rate is the one the new config gives there, a jump
from the rate the old schedule would have used.
"""
from detectron2.solver import LRScheduler
from detectron2.solver import build_lr_scheduler as build_d2_lr_scheduler
from detectron2.projects.deeplab.lr_scheduler import WarmupPolyLR as DeepLabWarmupPolyLR

from ..errors import InputError

# detectron2's LRMultiplier schedules (detectron2.solver.build_lr_scheduler). Its third,
# WarmupStepWithFixedGammaLR, is refused: detectron2 0.7.2 evaluates it after the last
# iteration at where = 1.0, where fvcore's StepParamScheduler raises an IndexError.
DETECTRON2_SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR")
SCHEDULERS = DETECTRON2_SCHEDULERS + ("WarmupPolyLR", "PolyLR")


class IterationState:
    """The state of a schedule that is a function of the iteration: the
    iteration and the base rates (as detectron2's LRMultiplier keeps), not the
    config's length, power or warmup."""

    def state_dict(self):
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict):
        self.base_lrs = state_dict["base_lrs"]
        self.last_epoch = state_dict["last_epoch"]


class WarmupPolyLR(IterationState, DeepLabWarmupPolyLR):
    """detectron2 DeepLab's WarmupPolyLR, ``base_lr * (1 - t / max_iters) ** power``
    after a warmup, held at ``base_lr * constant_ending`` once it falls below it.
    deeplab's own saves its ``max_iters``, so a resumed longer run took the
    checkpoint's and failed past it; here it comes from the config."""


class PolyLR(IterationState, LRScheduler):
    """mmengine's PolyLR as mmsegmentation trains with it: at iteration t of a
    run of ``max_iter`` iterations, each parameter group's rate is

        eta_min + (base_lr - eta_min) * (1 - t / (max_iter - 1)) ** power

    reaching ``eta_min`` (an absolute rate, the same for every group) at the
    last iteration and staying there. mmengine (0.10.7, PolyParamScheduler)
    computes each value from the previous one with ``total_iters = end - begin
    - 1``; this closed form is the same sequence up to rounding. No warmup.
    """

    def __init__(self, optimizer, max_iter, power=1.0, eta_min=0.0, last_epoch=-1):
        self.max_iter = max_iter
        self.power = power
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        progress = min(self.last_epoch / max(self.max_iter - 1, 1), 1.0)
        factor = (1.0 - progress) ** self.power
        return [self.eta_min + (base_lr - self.eta_min) * factor for base_lr in self.base_lrs]


def build_lr_scheduler(cfg, optimizer):
    """The schedule SOLVER.LR_SCHEDULER_NAME names (SCHEDULERS), for ``optimizer``.

    "PolyLR" is mmengine's (SOLVER.POLY_LR_POWER, SOLVER.POLY_LR_ETA_MIN;
    SOLVER.WARMUP_ITERS must be 0), "WarmupPolyLR" detectron2 DeepLab's
    (POLY_LR_POWER, POLY_LR_CONSTANT_ENDING, the warmup), the others
    detectron2's. Each resumes on the config's schedule: see the module docstring.
    """
    solver = cfg.SOLVER
    name = solver.LR_SCHEDULER_NAME
    if name == "WarmupStepWithFixedGammaLR":
        raise InputError(
            "SOLVER.LR_SCHEDULER_NAME WarmupStepWithFixedGammaLR fails at the last iteration in detectron2 "
            "0.7.2 (fvcore's StepParamScheduler): use WarmupMultiStepLR with SOLVER.STEPS and SOLVER.GAMMA"
        )
    if name not in SCHEDULERS:
        raise InputError(f"SOLVER.LR_SCHEDULER_NAME must be one of {list(SCHEDULERS)}, got {name!r}")
    if name == "PolyLR":
        if solver.WARMUP_ITERS:
            raise InputError(
                f"SOLVER.LR_SCHEDULER_NAME PolyLR (mmsegmentation's) has no warmup, but SOLVER.WARMUP_ITERS is "
                f"{solver.WARMUP_ITERS}: set it to 0, or use WarmupPolyLR"
            )
        scheduler = PolyLR(optimizer, solver.MAX_ITER, power=solver.POLY_LR_POWER, eta_min=solver.POLY_LR_ETA_MIN)
    elif name == "WarmupPolyLR":
        scheduler = WarmupPolyLR(
            optimizer,
            solver.MAX_ITER,
            warmup_factor=solver.WARMUP_FACTOR,
            warmup_iters=solver.WARMUP_ITERS,
            warmup_method=solver.WARMUP_METHOD,
            power=solver.POLY_LR_POWER,
            constant_ending=solver.POLY_LR_CONSTANT_ENDING,
        )
    else:
        scheduler = build_d2_lr_scheduler(cfg, optimizer)  # LRMultiplier: its state is already the iteration's
    optimizer.register_load_state_dict_post_hook(lambda optimizer: apply_schedule(scheduler, solver.MAX_ITER))
    return scheduler


def apply_schedule(scheduler, max_iter):
    """Give every parameter group the schedule's rate at the scheduler's iteration.

    Resuming, detectron2's trainer restores the scheduler, then the optimizer,
    whose groups hold the rate the checkpoint's schedule had set for the next
    iteration; ``build_lr_scheduler`` calls this once the optimizer is restored,
    so that the first resumed iteration already runs at the config's rate.
    A checkpoint past ``max_iter`` is left as it is: no iteration is left to train.
    """
    if scheduler.last_epoch > max_iter:
        return
    for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_lr()):
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
