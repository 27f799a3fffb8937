"""train_net.py: reports of several test datasets kept apart, training without
test datasets, and GPU counts checked before launching."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import train_net
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

from helpers import BASE_CONFIG, TINY_MODEL_OPTS, register_toy_dataset, run_train_net_script, tiny_cfg

# Training on register_toy_dataset's 48x64 images: a step takes a fraction of a second.
TINY_TRAINING = [
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
    "INPUT.RESIZE_TYPE", "scale", "INPUT.SCALE.BASE_SIZE", "64", "INPUT.CROP.SIZE", "(32, 48)",
]  # fmt: skip


def labelled_pixels(records):
    return sum(int((np.asarray(Image.open(r["sem_seg_file_name"])) != 255).sum()) for r in records)


def test_each_test_dataset_writes_its_reports_under_its_name(tmp_path):
    sizes = {"toy_first": 1, "toy_second": 2}
    records = {name: register_toy_dataset(tmp_path / name, name, num_images=n, seed=n)
               for name, n in sizes.items()}  # fmt: skip
    cfg = tiny_cfg("DATASETS.TEST", tuple(sizes), "OUTPUT_DIR", str(tmp_path / "output"),
                   "TEST.AUG.ENABLED", True, "TEST.AUG.SCALES", (1.0,))  # fmt: skip
    model = build_model(cfg).eval()
    results = train_net.Trainer.test(cfg, model)
    augmented = train_net.Trainer.test_with_TTA(cfg, model)
    assert set(results) == set(augmented) == set(sizes)
    for folder in ("inference", "inference_TTA"):
        for name in sizes:
            output = tmp_path / "output" / folder / name
            assert (output / "confusion_matrix.png").is_file() and (output / "sem_seg_evaluation.pth").is_file()
            report = json.loads((output / "sem_seg_per_class.json").read_text())
            # Each report counts its own dataset's pixels.
            assert sum(c["gt_pixels"] for c in report["classes"]) == labelled_pixels(records[name])
        assert not (tmp_path / "output" / folder / "sem_seg_per_class.json").exists()


def test_training_without_test_datasets_skips_the_final_evaluation(tmp_path):
    register_toy_dataset(tmp_path / "data", "toy_train_only")
    args = default_argument_parser().parse_args(
        ["--config-file", BASE_CONFIG, *TINY_MODEL_OPTS, *TINY_TRAINING, "OUTPUT_DIR", str(tmp_path / "output"),
         "DATASETS.TRAIN", "('toy_train_only',)", "DATASETS.TEST", "()"]
    )  # fmt: skip
    train_net.main(args)
    assert (tmp_path / "output" / "model_final.pth").is_file()
    assert "DATASETS.TEST is empty: evaluation skipped." in (tmp_path / "output" / "log.txt").read_text()


@pytest.mark.skipif(torch.cuda.device_count() >= 8, reason="8 GPUs are present")
def test_more_gpus_than_present_is_one_line_before_launching():
    with pytest.raises(SystemExit) as exit:
        run_train_net_script("--config-file", BASE_CONFIG, "--num-gpus", "8")
    message = str(exit.value.code)
    assert message.startswith("train_net.py: error: --num-gpus 8 with MODEL.DEVICE 'cuda'")
    assert "MODEL.DEVICE cpu" in message and "\n" not in message


def test_cpu_processes_are_still_launched():
    launched = run_train_net_script("--config-file", BASE_CONFIG, "--num-gpus", "2", "MODEL.DEVICE", "cpu")
    [(function, num_gpus)] = launched
    assert (function.__name__, num_gpus) == ("main", 2)
