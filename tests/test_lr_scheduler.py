"""The learning-rate schedules of danet/engine/lr_scheduler.py: mmengine's PolyLR
reproduced at every iteration, and ``--resume`` with a larger SOLVER.MAX_ITER
continuing on the new schedule for every SOLVER.LR_SCHEDULER_NAME."""
import pytest
import torch

import train_net as train_net_module
from helpers import TINY_DEMO, TrainingRecorder, cpu_cfg, last_metrics, one_line_error, scheduled_lr
from mmseg_reference import mmseg  # noqa: F401  (a fixture)
from test_training_reliability import train_in_process

from danet.engine import SCHEDULERS, build_lr_scheduler
from danet.errors import InputError


def two_groups():
    """An SGD optimiser with two parameter groups of different base rates."""
    parameters = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    return torch.optim.SGD([{"params": [parameters[0]], "lr": 0.01}, {"params": [parameters[1]], "lr": 0.02}], lr=0.01)


def test_poly_lr_is_mmengines_at_every_iteration(mmseg):
    """Each group's rate, iteration by iteration, as mmengine's PolyLR stepped
    after every iteration (mmseg's ParamSchedulerHook); eta_min is absolute."""
    from mmengine.optim.scheduler import PolyLR as MMEnginePolyLR

    iterations = 1000
    cfg = cpu_cfg("base.yaml", "SOLVER.LR_SCHEDULER_NAME", "PolyLR", "SOLVER.POLY_LR_ETA_MIN", "1e-4",
                  "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", iterations)  # fmt: skip
    ours, theirs = two_groups(), two_groups()
    scheduler = build_lr_scheduler(cfg, ours)
    reference = MMEnginePolyLR(theirs, eta_min=1e-4, power=cfg.SOLVER.POLY_LR_POWER, begin=0, end=iterations, by_epoch=False)
    rates, expected = [], []
    for _ in range(iterations):
        rates.append([group["lr"] for group in ours.param_groups])
        expected.append([group["lr"] for group in theirs.param_groups])
        ours.step(), theirs.step()
        scheduler.step(), reference.step()
    rates, expected = torch.tensor(rates, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    assert ((rates - expected).abs() / expected).max() < 1e-12
    assert expected[0].tolist() == [0.01, 0.02] and expected[-1].tolist() == [1e-4, 1e-4]


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.LR_SCHEDULER_NAME", "PolyLR"], "PolyLR .* has no warmup, but SOLVER.WARMUP_ITERS is 1000: set it to 0"),
    (["SOLVER.LR_SCHEDULER_NAME", "Poly"], "SOLVER.LR_SCHEDULER_NAME must be one of .*'PolyLR'.*, got 'Poly'"),
    # detectron2's own fails after the last iteration: refused before training.
    (["SOLVER.LR_SCHEDULER_NAME", "WarmupStepWithFixedGammaLR"], "fails at the last iteration .* use WarmupMultiStepLR"),
])  # fmt: skip
def test_bad_schedule_is_named(opts, message):
    with pytest.raises(InputError, match=message):
        build_lr_scheduler(cpu_cfg("base.yaml", *opts), two_groups())


def test_bad_schedule_stops_train_net_in_one_line(toy_cityscapes, tmp_path):
    opts = ["SOLVER.LR_SCHEDULER_NAME", "PolyLR", "SOLVER.MAX_ITER", "2"]
    message = one_line_error(lambda: train_in_process(toy_cityscapes, tmp_path, *opts))
    assert "SOLVER.WARMUP_ITERS is 2: set it to 0" in message


def test_checkpoint_of_deeplabs_warmup_poly_lr_resumes_on_the_configs_length():
    """Checkpoints written before this fix hold deeplab's whole WarmupPolyLR state (max_iters 4)."""
    from detectron2.projects.deeplab.lr_scheduler import WarmupPolyLR as DeepLabWarmupPolyLR

    optimizer = two_groups()
    old = DeepLabWarmupPolyLR(optimizer, 4, warmup_iters=0)
    for _ in range(4):
        optimizer.step(), old.step()
    cfg = cpu_cfg("demo.yaml", "SOLVER.MAX_ITER", 8, "SOLVER.WARMUP_ITERS", 0)
    optimizer = two_groups()
    scheduler = build_lr_scheduler(cfg, optimizer)
    scheduler.load_state_dict(old.state_dict())
    optimizer.step(), scheduler.step()
    assert (scheduler.max_iters, scheduler.last_epoch) == (8, 5)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.01 * (1 - 5 / 8) ** 0.9, rel=1e-12)


# Per schedule, what it needs on the tiny demo config (a warmup of 2 iterations).
SCHEDULE_OPTS = {
    "WarmupPolyLR": [],
    "PolyLR": ["SOLVER.WARMUP_ITERS", "0", "SOLVER.POLY_LR_ETA_MIN", "1e-3"],
    "WarmupMultiStepLR": ["SOLVER.STEPS", "(3, 6)"],
    "WarmupCosineLR": [],
}


def train_recording_rates(monkeypatch, datasets, output_dir, *opts, flags=()):
    """train_in_process without evaluation; the learning rate of every parameter at each iteration it trained."""
    recorder = TrainingRecorder()
    build_hooks = train_net_module.Trainer.build_hooks
    monkeypatch.setattr(train_net_module.Trainer, "build_hooks", lambda self: build_hooks(self) + [recorder])
    train_in_process(datasets, output_dir, "DATASETS.TEST", "()", *opts, flags=flags)
    return [[settings["lr"] for settings in step.values()] for step in recorder.settings]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_resume_with_larger_max_iter_follows_the_new_schedule(toy_cityscapes, tmp_path, monkeypatch, name):
    """Issue: WarmupPolyLR kept the checkpoint's max_iters, logged lr 0 and died
    with a math domain error; every schedule started the resumed run at the rate
    the old schedule had set in the checkpoint's optimizer."""
    assert set(SCHEDULE_OPTS) == set(SCHEDULERS)
    opts = ["SOLVER.LR_SCHEDULER_NAME", name, *SCHEDULE_OPTS[name]]
    first = train_recording_rates(monkeypatch, toy_cityscapes, tmp_path, *opts, "SOLVER.MAX_ITER", "4")
    longer = ["SOLVER.MAX_ITER", "8"]
    resumed = train_recording_rates(monkeypatch, toy_cityscapes, tmp_path, *opts, *longer, flags=["--resume"])
    assert last_metrics(tmp_path)["iteration"] == 7 and len(first) == len(resumed) == 4

    short, long = (cpu_cfg("demo.yaml", *TINY_DEMO, *opts, "SOLVER.MAX_ITER", n) for n in (4, 8))
    for iteration, rates in enumerate(first + resumed):
        cfg = short if iteration < 4 else long
        assert rates == pytest.approx([scheduled_lr(cfg, iteration)] * len(rates), rel=1e-12), iteration
