"""Bad samples, killed runs, non-finite losses, seeds and CPU multi-process
training: each ends the way the README's troubleshooting section says."""
import os
import shutil
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog

from helpers import TINY_DEMO, cpu_cfg, last_metrics, scheduled_lr, train_net
from danet.data import BadSampleError, build_train_mapper


def corrupted_copy(toy_cityscapes, tmp_path, corrupt):
    """A copy of the toy datasets where ``corrupt(first training record)`` damaged one sample."""
    datasets = tmp_path / "datasets"
    shutil.copytree(toy_cityscapes["datasets"], datasets)
    record = DatasetCatalog.get(toy_cityscapes["train"])[0]
    record = {k: v.replace(toy_cityscapes["datasets"], str(datasets)) if isinstance(v, str) else v
              for k, v in record.items()}  # fmt: skip
    return datasets, corrupt(record)


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
    datasets, bad_file = corrupted_copy(toy_cityscapes, tmp_path, corrupt)
    record = DatasetCatalog.get(toy_cityscapes["train"])[0]
    record = {k: v.replace(toy_cityscapes["datasets"], str(datasets)) if isinstance(v, str) else v
              for k, v in record.items()}  # fmt: skip
    cfg = cpu_cfg("demo.yaml", *TINY_DEMO)
    with pytest.raises(BadSampleError, match=f"{bad_file}.*{reason}"):
        build_train_mapper(cfg)(record)
    cfg.DATALOADER.SKIP_BAD_SAMPLES = True
    mapper = build_train_mapper(cfg)
    assert mapper(record) is None and mapper(record) is None
    assert mapper.num_skipped == 2


def test_training_stops_at_a_bad_sample_naming_it(toy_cityscapes, tmp_path):
    datasets, bad_file = corrupted_copy(toy_cityscapes, tmp_path, truncated)
    result = train_net(datasets, tmp_path / "out", "SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "4")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"train_net.py: error: {bad_file}: cannot read it")
    assert not os.path.exists(tmp_path / "out" / "model_final.pth")

    skipped = train_net(datasets, tmp_path / "skip", "SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "4",
                        "DATALOADER.SKIP_BAD_SAMPLES", "True")  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert f"Skipped: {bad_file}" in skipped.stdout
    assert os.path.exists(tmp_path / "skip" / "model_final.pth")


def test_non_finite_loss_stops_naming_iteration_and_terms(toy_cityscapes, tmp_path):
    result = train_net(toy_cityscapes["datasets"], tmp_path, "SOLVER.MAX_ITER", "3", "SOLVER.BASE_LR", "1e30")
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("train_net.py: error: Loss became infinite or NaN at iteration=")
    for term in ("loss_fused", "loss_position", "loss_channel"):
        assert term in last_line


def test_killed_run_resumes_at_the_right_iteration_and_learning_rate(toy_cityscapes, tmp_path):
    opts = ["SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "10"]
    run = train_net(toy_cityscapes["datasets"], tmp_path, *opts, background=True)
    deadline = time.time() + 300
    while not (tmp_path / "last_checkpoint").exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not (tmp_path / "model_final.pth").exists(), "the run finished before it could be killed"

    resumed = train_net(toy_cityscapes["datasets"], tmp_path, *opts, flags=["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Starting training from iteration 10" in resumed.stdout
    assert (tmp_path / "model_final.pth").exists()
    metrics = last_metrics(tmp_path)
    assert metrics["iteration"] == 29

    # The learning rate follows the uninterrupted schedule (WarmupPolyLR) at iteration 29.
    assert metrics["lr"] == pytest.approx(scheduled_lr(cpu_cfg("demo.yaml", *TINY_DEMO, *opts), 29), rel=1e-6)


def test_same_seed_same_losses(toy_cityscapes, tmp_path):
    opts = ["SOLVER.MAX_ITER", "3", "SEED", "7", "DATALOADER.NUM_WORKERS", "1"]
    runs = [train_net(toy_cityscapes["datasets"], tmp_path / name, *opts) for name in ("a", "b")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    first, second = (last_metrics(tmp_path / name) for name in ("a", "b"))
    for term in ("loss_fused", "loss_position", "loss_channel", "total_loss"):
        assert first[term] == second[term], term


def test_two_cpu_processes_train_and_evaluate_like_one(toy_cityscapes, tmp_path):
    two_processes = ["--num-gpus", "2", "--dist-url", "auto"]
    sync_bn = ["MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN"]
    trained = train_net(toy_cityscapes["datasets"], tmp_path / "train", "SOLVER.MAX_ITER", "3", *sync_bn,
                        flags=two_processes)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "MODEL.RESNETS.NORM: SyncBN needs CUDA; using naiveSyncBN on CPU" in trained.stdout
    assert last_metrics(tmp_path / "train")["iteration"] == 2

    weights = ["MODEL.WEIGHTS", str(tmp_path / "train" / "model_final.pth"), *sync_bn]
    results = {}
    for processes in ("1", "2"):
        output_dir = tmp_path / f"eval{processes}"
        flags = ["--eval-only", "--num-gpus", processes, "--dist-url", "auto"]
        evaluated = train_net(toy_cityscapes["datasets"], output_dir, *weights, flags=flags)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        results[processes] = torch.load(output_dir / "inference" / "sem_seg_evaluation.pth", weights_only=False)
    assert results["1"].keys() == results["2"].keys()
    one, two = ([r[key] for key in results["1"]] for r in (results["1"], results["2"]))
    np.testing.assert_allclose(one, two, rtol=1e-9, equal_nan=True)
