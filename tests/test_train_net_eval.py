"""train_net.py --eval-only with test-time augmentation and the evaluator choice."""
import importlib.util
import os

import pytest

from detectron2.data import MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.evaluation import DatasetEvaluators

from danet.evaluation import CityscapesOfficialEvaluator, SemSegReportEvaluator
from helpers import BASE_CONFIG, REPO, TINY_MODEL_OPTS, register_toy_dataset, save_tiny_weights, tiny_cfg

spec = importlib.util.spec_from_file_location("train_net", os.path.join(REPO, "train_net.py"))
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)


def test_eval_only_reports_plain_and_augmented_side_by_side(tmp_path):
    register_toy_dataset(tmp_path / "data", "toy_eval_only")
    output = tmp_path / "output"
    args = default_argument_parser().parse_args(
        ["--config-file", BASE_CONFIG, "--eval-only"]
        + TINY_MODEL_OPTS
        + [
            "DATASETS.TEST", "('toy_eval_only',)",
            "MODEL.WEIGHTS", save_tiny_weights(tmp_path / "tiny_model.pth"),
            "OUTPUT_DIR", str(output),
            "TEST.AUG.ENABLED", "True",
            "TEST.AUG.SCALES", "(0.5, 1.0)",
            "TEST.SLIDING_WINDOW.ENABLED", "True",
            "TEST.SLIDING_WINDOW.CROP_SIZE", "(32, 32)",
            "TEST.SLIDING_WINDOW.STRIDE", "(24, 24)",
        ]
    )
    results = train_net.main(args)
    assert set(results) == {"sem_seg", "sem_seg_TTA"}
    assert 0 <= results["sem_seg"]["mIoU"] <= 100 and 0 <= results["sem_seg_TTA"]["mIoU"] <= 100
    for folder in ("inference", "inference_TTA"):
        assert (output / folder / "sem_seg_per_class.json").is_file()
        assert (output / folder / "confusion_matrix.png").is_file()
    log = (output / "log.txt").read_text()
    table = log[log.index("Plain and augmented results on toy_eval_only") :].splitlines()
    assert table[1].split("|")[1].strip() == "inference"
    assert table[3].split("|")[1].strip() == "plain" and table[4].split("|")[1].strip() == "TTA"
    assert f"{results['sem_seg_TTA']['mIoU']:.2f}" in table[4]


def test_evaluators_from_config(tmp_path):
    register_toy_dataset(tmp_path, "toy_evaluators", num_images=1)
    evaluator = train_net.Trainer.build_evaluator(tiny_cfg(), "toy_evaluators")
    assert isinstance(evaluator, DatasetEvaluators)
    assert [type(e) for e in evaluator._evaluators] == [SemSegReportEvaluator]
    cfg = tiny_cfg("TEST.CITYSCAPES_EVALUATOR", True)
    with pytest.raises(ValueError, match="TEST.CITYSCAPES_EVALUATOR"):
        train_net.Trainer.build_evaluator(cfg, "toy_evaluators")
    MetadataCatalog.get("toy_evaluators").set(gt_dir=str(tmp_path))
    evaluator = train_net.Trainer.build_evaluator(cfg, "toy_evaluators")
    assert [type(e) for e in evaluator._evaluators] == [SemSegReportEvaluator, CityscapesOfficialEvaluator]
