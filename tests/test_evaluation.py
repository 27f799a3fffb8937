"""The evaluation report (danet/evaluation/sem_seg_evaluation.py), cross-checked against cityscapesScripts."""
import csv
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cityscapes_eval
from cityscapesscripts.helpers.labels import trainId2label
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator

from danet.evaluation.sem_seg_evaluation import (
    CityscapesOfficialEvaluator,
    SemSegReportEvaluator,
    comparison_table,
    per_class_metrics,
    summary_table,
)
from helpers import CLASSES, COLORS

# Train id -> Cityscapes label id; the ignored train id 255 becomes "unlabeled" (0).
TRAIN_TO_LABEL_ID = np.zeros(256, dtype=np.uint8)
for train_id in range(19):
    TRAIN_TO_LABEL_ID[train_id] = trainId2label[train_id].id


def make_cityscapes_like(root, num_images=3, size=(24, 32), seed=0):
    """Ground truth in train ids (PNG files, some 255) and predicted train ids.

    The ground truth only uses classes 0..15. Predictions agree with it on
    about 60% of pixels and are otherwise any of 0..17, so classes 16 and 17 are
    predicted without being in the ground truth and class 18 appears nowhere.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    samples = []
    for i in range(num_images):
        gt = rng.integers(0, 16, size=size).astype(np.uint8)
        gt[rng.random(size) < 0.15] = 255
        pred = np.where(rng.random(size) < 0.6, gt, rng.integers(0, 18, size=size)).astype(np.uint8)
        pred[pred == 255] = 3
        stem = f"testcity_000000_{i:06d}"
        gt_file = os.path.join(root, f"{stem}_gtFine_trainIds.png")
        Image.fromarray(gt).save(gt_file)
        samples.append({"stem": stem, "gt": gt, "pred": pred, "gt_file": gt_file,
                        "file_name": os.path.join(root, f"{stem}_leftImg8bit.png")})
    return samples


def register(name, samples, **metadata):
    records = [{"file_name": s["file_name"], "sem_seg_file_name": s["gt_file"]} for s in samples]
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=CLASSES, stuff_colors=COLORS, ignore_label=255, **metadata)


def one_hot_logits(pred):
    return torch.nn.functional.one_hot(torch.as_tensor(pred, dtype=torch.long), 19).permute(2, 0, 1).float()


def run_evaluator(evaluator, samples):
    evaluator.reset()
    for s in samples:
        evaluator.process([{"file_name": s["file_name"]}], [{"sem_seg": one_hot_logits(s["pred"])}])
    return evaluator.evaluate()


@pytest.fixture
def samples(tmp_path):
    samples = make_cityscapes_like(tmp_path / "data")
    register("toy_eval_cityscapes", samples)
    return samples


def test_per_class_metrics_by_hand():
    # [ground truth, prediction]; class 2 is predicted once but never in the ground truth.
    conf = np.array([[3, 1, 0], [2, 4, 1], [0, 0, 0]])
    iou, acc = per_class_metrics(conf)
    np.testing.assert_allclose(iou, [3 / 6, 4 / 8, 0.0])
    np.testing.assert_allclose(acc[:2], [3 / 4, 4 / 7])
    assert math.isnan(acc[2])
    iou, _ = per_class_metrics(np.array([[1, 0], [0, 0]]))
    assert iou[0] == 1.0 and math.isnan(iou[1])


def test_iou_matches_cityscapes_scripts(samples, tmp_path, monkeypatch):
    ours = run_evaluator(SemSegReportEvaluator("toy_eval_cityscapes", distributed=False), samples)["sem_seg"]

    # The same predictions and ground truth in label ids, through cityscapesScripts.
    gt_files, pred_files = [], []
    for s in samples:
        gt_files.append(str(tmp_path / f"{s['stem']}_gtFine_labelIds.png"))
        pred_files.append(str(tmp_path / f"{s['stem']}_pred.png"))
        Image.fromarray(TRAIN_TO_LABEL_ID[s["gt"]]).save(gt_files[-1])
        Image.fromarray(TRAIN_TO_LABEL_ID[s["pred"]]).save(pred_files[-1])
    for field, value in dict(
        evalInstLevelScore=False, evalPixelAccuracy=False, JSONOutput=False, quiet=True, colorized=False
    ).items():
        monkeypatch.setattr(cityscapes_eval.args, field, value)
    official = cityscapes_eval.evaluateImgLists(pred_files, gt_files, cityscapes_eval.args)

    for train_id, name in enumerate(CLASSES):
        expected = official["classScores"][name]
        if train_id == 18:
            assert math.isnan(expected) and math.isnan(ours[f"IoU-{name}"])
        else:
            assert ours[f"IoU-{name}"] / 100 == pytest.approx(expected, abs=1e-6), name
    assert ours["mIoU"] / 100 == pytest.approx(official["averageScoreClasses"], abs=1e-6)
    assert official["classScores"][CLASSES[16]] == 0.0
    # detectron2's own SemSegEvaluator skips the classes absent from the ground
    # truth, so it would not agree on this data.
    stock = run_evaluator(SemSegEvaluator("toy_eval_cityscapes", distributed=False), samples)["sem_seg"]
    assert abs(stock["mIoU"] / 100 - official["averageScoreClasses"]) > 0.01


def test_report_files(samples, tmp_path):
    out = tmp_path / "report"
    results = run_evaluator(
        SemSegReportEvaluator("toy_eval_cityscapes", distributed=False, output_dir=str(out)), samples
    )["sem_seg"]
    with open(out / "sem_seg_per_class.json") as f:
        report = json.load(f)
    assert [row["class"] for row in report["classes"]] == CLASSES
    assert report["summary"]["mean IoU %"] == pytest.approx(results["mIoU"])
    road = report["classes"][0]
    assert road["IoU"] == pytest.approx(results["IoU-road"])
    assert road["ACC"] == pytest.approx(results["ACC-road"])
    gt_road = sum(int((s["gt"] == 0).sum()) for s in samples)
    assert road["gt_pixels"] == gt_road
    assert report["classes"][18]["IoU"] is None and report["classes"][16]["ACC"] is None
    with open(out / "sem_seg_per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 19 and float(rows[1]["IoU"]) == pytest.approx(results["IoU-sidewalk"])
    assert rows[18]["IoU"] == ""
    picture = Image.open(out / "confusion_matrix.png")
    assert picture.size[0] > 200 and picture.size[1] > 200
    saved = torch.load(out / "sem_seg_evaluation.pth", weights_only=False)
    assert saved["mIoU"] == results["mIoU"]


def table_cells(table):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]


def test_summary_and_comparison_tables():
    plain = {"pACC": 90.0, "mACC": 70.5, "mIoU": 60.25, "fwIoU": 80.0}
    tta = dict(plain, mIoU=62.0)
    header, _, row = table_cells(summary_table(plain))
    assert header == ["PA %", "mean PA %", "mean IoU %", "FW IoU %"]
    assert row == ["90.00", "70.50", "60.25", "80.00"]
    header, _, plain_row, tta_row = table_cells(comparison_table({"plain": plain, "TTA": tta}))
    assert header[0] == "inference"
    assert plain_row == ["plain", "90.00", "70.50", "60.25", "80.00"]
    assert tta_row == ["TTA", "90.00", "70.50", "62.00", "80.00"]


def test_official_cityscapes_evaluator(samples, tmp_path):
    """detectron2's CityscapesSemSegEvaluator (no detectron2._C needed) on a
    Cityscapes-shaped gt_dir gives our mIoU."""
    gt_dir = tmp_path / "gtFine" / "val"
    (gt_dir / "testcity").mkdir(parents=True)
    for s in samples:
        label_ids = TRAIN_TO_LABEL_ID[s["gt"]]
        Image.fromarray(label_ids).save(gt_dir / "testcity" / f"{s['stem']}_gtFine_labelIds.png")
        # No instances (ids below 1000): the instance-level scores are not checked here.
        Image.fromarray(label_ids).save(gt_dir / "testcity" / f"{s['stem']}_gtFine_instanceIds.png")
    register("toy_eval_cityscapes_official", samples, gt_dir=str(gt_dir))
    official = run_evaluator(CityscapesOfficialEvaluator("toy_eval_cityscapes_official"), samples)
    ours = run_evaluator(SemSegReportEvaluator("toy_eval_cityscapes_official", distributed=False), samples)
    assert official["sem_seg_cityscapes"]["IoU"] == pytest.approx(ours["sem_seg"]["mIoU"], abs=1e-4)


def test_official_evaluator_refuses_other_datasets(samples):
    with pytest.raises(ValueError, match=r"TEST\.CITYSCAPES_EVALUATOR.*gt_dir"):
        CityscapesOfficialEvaluator("toy_eval_cityscapes")
