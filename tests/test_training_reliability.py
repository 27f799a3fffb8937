"""Bad samples, killed runs, non-finite losses, seeds and CPU multi-process
training: each ends the way the README's troubleshooting section says."""
import os
import shutil
import signal
import sys
import time
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

import train_net as train_net_module
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser

from helpers import REPO, TINY_DEMO, cpu_cfg, last_metrics, one_line_error, scheduled_lr, train_net
from danet import register_cityscapes_sem_seg
from danet.checkpoint import SafeCheckpointer
from danet.data import BadSampleError, build_train_mapper


def train_in_process(datasets, output_dir, *opts, flags=()):
    """train_net.main on the demo config shrunk by TINY_DEMO, in this process,
    on ``datasets`` ({"train": name, "val": name}) registered here."""
    args = default_argument_parser().parse_args([
        "--config-file", os.path.join(REPO, "configs", "demo.yaml"), *flags, *TINY_DEMO,
        "DATASETS.TRAIN", f"('{datasets['train']}',)", "DATASETS.TEST", f"('{datasets['val']}',)",
        "OUTPUT_DIR", str(output_dir), *opts,
    ])  # fmt: skip
    return train_net_module.main(args)


def copy_of_datasets(toy_cityscapes, tmp_path):
    """A copy of the toy datasets, its splits registered here: {"root", "datasets", "train", "val"}."""
    datasets = tmp_path / "datasets"
    shutil.copytree(toy_cityscapes["datasets"], datasets)
    names = {"root": str(datasets / "toy_cityscapes"), "datasets": str(datasets)}
    for split in ("train", "val"):
        names[split] = f"toy_copy_{split}_{uuid.uuid4().hex[:8]}"
        register_cityscapes_sem_seg(names[split], names["root"], split)
    return names


def corrupted_copy(toy_cityscapes, tmp_path, corrupt):
    """A copy of the toy datasets where ``corrupt(first training record)`` damaged one sample."""
    datasets = copy_of_datasets(toy_cityscapes, tmp_path)
    record = DatasetCatalog.get(datasets["train"])[0]
    return datasets, record, corrupt(record)


def zero_bytes(record):
    open(record["file_name"], "wb").close()
    return record["file_name"]


def truncated(record):
    data = open(record["file_name"], "rb").read()
    open(record["file_name"], "wb").write(data[: len(data) // 2])
    return record["file_name"]


def label_of_other_size(record):
    label = np.array(Image.open(record["sem_seg_file_name"]))
    Image.fromarray(label[:-8]).save(record["sem_seg_file_name"])
    return record["sem_seg_file_name"]


def label_with_unknown_id(record):
    label = np.array(Image.open(record["sem_seg_file_name"]))
    label[0, 0] = 40
    Image.fromarray(label).save(record["sem_seg_file_name"])
    return record["sem_seg_file_name"]


def colour_label(record):
    label = np.array(Image.open(record["sem_seg_file_name"]))
    Image.fromarray(np.stack([label] * 3, axis=-1)).save(record["sem_seg_file_name"])
    return record["sem_seg_file_name"]


@pytest.mark.parametrize("corrupt, reason", [
    (zero_bytes, "cannot read"), (truncated, "cannot read"), (label_of_other_size, "label is 128x56"),
    (label_with_unknown_id, r"ids \[40\] are outside"), (colour_label, "one channel"),
])  # fmt: skip
def test_bad_sample_is_named_or_skipped(toy_cityscapes, tmp_path, corrupt, reason):
    _, record, bad_file = corrupted_copy(toy_cityscapes, tmp_path, corrupt)
    cfg = cpu_cfg("demo.yaml", *TINY_DEMO)
    with pytest.raises(BadSampleError, match=f"{bad_file}.*{reason}"):
        build_train_mapper(cfg)(dict(record))
    cfg.DATALOADER.SKIP_BAD_SAMPLES = True
    mapper = build_train_mapper(cfg)
    assert mapper(dict(record)) is None and mapper(dict(record)) is None
    assert mapper.num_skipped == 2


def test_training_stops_at_a_bad_sample_naming_it(toy_cityscapes, tmp_path):
    datasets, _, bad_file = corrupted_copy(toy_cityscapes, tmp_path, truncated)
    opts = ["SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "4"]
    message = one_line_error(lambda: train_in_process(datasets, tmp_path / "out", *opts))
    assert message.startswith(f"train_net.py: error: {bad_file}: cannot read it")
    assert not os.path.exists(tmp_path / "out" / "model_final.pth")

    train_in_process(datasets, tmp_path / "skip", *opts, "DATALOADER.SKIP_BAD_SAMPLES", "True")
    assert f"Skipped: {bad_file}" in (tmp_path / "skip" / "log.txt").read_text()
    assert os.path.exists(tmp_path / "skip" / "model_final.pth")


def test_non_finite_loss_stops_naming_iteration_and_terms(toy_cityscapes, tmp_path):
    opts = ["SOLVER.MAX_ITER", "3", "SOLVER.BASE_LR", "1e30"]
    message = one_line_error(lambda: train_in_process(toy_cityscapes, tmp_path, *opts))
    assert message.startswith("train_net.py: error: Loss became infinite or NaN at iteration=")
    for term in ("loss_fused", "loss_position", "loss_channel"):
        assert term in message


# train_net.py's main in a process that, once the checkpoint of iteration 4
# is saved, says so and waits to be killed.
WAIT_AFTER_CHECKPOINT = """
import sys, time
sys.path.insert(0, {repo!r})
import train_net
from detectron2.engine import HookBase, default_argument_parser

class WaitToBeKilled(HookBase):
    def after_step(self):  # after PeriodicCheckpointer's
        if self.trainer.iter == 3:
            open({ready!r}, "w").close()
            time.sleep(3600)

build_hooks = train_net.Trainer.build_hooks
train_net.Trainer.build_hooks = lambda self: build_hooks(self) + [WaitToBeKilled()]
train_net.main(default_argument_parser().parse_args(sys.argv[2:]))  # after "-c" and train_net.py
"""


def test_killed_run_resumes_at_the_right_iteration_and_learning_rate(toy_cityscapes, tmp_path):
    opts = ["SOLVER.MAX_ITER", "12", "SOLVER.CHECKPOINT_PERIOD", "4"]
    ready = tmp_path / "checkpoint_saved"
    script = WAIT_AFTER_CHECKPOINT.format(repo=REPO, ready=str(ready))
    waiting = (sys.executable, "-c", script)
    run = train_net(toy_cityscapes["datasets"], tmp_path / "out", *opts, background=True, launcher=waiting)
    try:
        while not ready.exists():
            assert run.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.05)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert (tmp_path / "out" / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (tmp_path / "out" / "model_final.pth").exists()

    train_in_process(toy_cityscapes, tmp_path / "out", *opts, flags=["--resume"])
    assert "Starting training from iteration 4" in (tmp_path / "out" / "log.txt").read_text()
    assert (tmp_path / "out" / "model_final.pth").exists()
    metrics = last_metrics(tmp_path / "out")
    assert metrics["iteration"] == 11

    # The learning rate follows the uninterrupted schedule (WarmupPolyLR) at iteration 11.
    assert metrics["lr"] == pytest.approx(scheduled_lr(cpu_cfg("demo.yaml", *TINY_DEMO, *opts), 11), rel=1e-6)


def test_same_seed_same_losses(toy_cityscapes, tmp_path):
    opts = ["SOLVER.MAX_ITER", "3", "SEED", "7", "DATALOADER.NUM_WORKERS", "1"]
    for name in ("a", "b"):
        train_in_process(toy_cityscapes, tmp_path / name, *opts)
    first, second = (last_metrics(tmp_path / name) for name in ("a", "b"))
    for term in ("loss_fused", "loss_position", "loss_channel", "total_loss"):
        assert first[term] == second[term], term


def parameters(checkpoint):
    """The learned tensors of a checkpoint (not BN's running statistics)."""
    model = torch.load(checkpoint, weights_only=False)["model"]
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    return {k: torch.as_tensor(v) for k, v in model.items() if not k.endswith(statistics)}


def test_two_cpu_processes_train_and_evaluate_like_one(toy_cityscapes, tmp_path):
    # Every batch is the whole training set (4 images), however the sampler
    # orders and splits it: 2 per process, or 4 in one. With deterministic
    # augmentation, no dropout, normalisation by fixed statistics (each image
    # on its own) and labels without ignored pixels (the same pixel count in
    # every image, so the mean of the processes' mean losses is the batch's
    # mean loss), all-reduced gradients equal the one-process ones up to
    # rounding. (With SyncBN, which becomes naiveSyncBN on CPU, the two-step
    # update differed from one-process BN's by 17%: not used here.)
    datasets = copy_of_datasets(toy_cityscapes, tmp_path)
    for record in DatasetCatalog.get(datasets["train"]):
        label = np.array(Image.open(record["sem_seg_file_name"]))
        Image.fromarray(np.where(label == 255, 0, label).astype(np.uint8)).save(record["sem_seg_file_name"])
    frozen_bn = ["MODEL.RESNETS.NORM", "FrozenBN", "MODEL.SEM_SEG_HEAD.NORM", "FrozenBN"]
    cfg = cpu_cfg("demo.yaml", *TINY_DEMO, *frozen_bn)
    SafeCheckpointer(train_net_module.Trainer.build_model(cfg), save_dir=str(tmp_path)).save("initial")
    opts = [
        "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "4", "MODEL.WEIGHTS", str(tmp_path / "initial.pth"),
        "INPUT.SCALE.RANGE", "(1.0, 1.0)", "INPUT.CROP.ENABLED", "False", "INPUT.RANDOM_FLIP", "none",
        "MODEL.DANET.DROPOUT", "0.0", *frozen_bn,
    ]  # fmt: skip
    two_processes = ["--num-gpus", "2", "--dist-url", "auto"]
    two = train_net(datasets["datasets"], tmp_path / "two", *opts, flags=two_processes)
    assert two.returncode == 0, two.stderr[-3000:]
    assert last_metrics(tmp_path / "two")["iteration"] == 1
    train_in_process(datasets, tmp_path / "one", *opts)

    initial = parameters(tmp_path / "initial.pth")
    step_one, step_two = (
        torch.cat([(trained[k] - initial[k]).flatten() for k in sorted(initial)])
        for trained in (parameters(tmp_path / run / "model_final.pth") for run in ("one", "two"))
    )
    assert step_one.norm() > 0
    # float32 rounding in different summation orders: 4e-5 of the step measured.
    assert (step_two - step_one).norm() / step_one.norm() < 1e-3

    # The two-process evaluation after training agrees with a one-process one of the same weights.
    trained_by_two = ["MODEL.WEIGHTS", str(tmp_path / "two" / "model_final.pth")]
    train_in_process(datasets, tmp_path / "eval", *opts, *trained_by_two, flags=["--eval-only"])
    by_two, by_one = (torch.load(tmp_path / run / "inference" / "sem_seg_evaluation.pth", weights_only=False)
                      for run in ("two", "eval"))  # fmt: skip
    assert by_two.keys() == by_one.keys()
    metrics = sorted(by_two)
    np.testing.assert_allclose([by_two[k] for k in metrics], [by_one[k] for k in metrics], rtol=1e-9, equal_nan=True)
