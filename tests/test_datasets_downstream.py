"""The evaluation report follows the dataset: class names from its metadata and
a confusion-matrix picture that stays readable at ADE20K's 150 classes."""
import csv

import numpy as np
from PIL import Image

from danet.evaluation.sem_seg_evaluation import (
    MAX_PLOTTED_CLASSES,
    class_report,
    most_confused_classes,
    per_class_metrics,
    write_report,
)


def test_most_confused_classes_are_the_ones_with_most_misclassified_pixels():
    conf_matrix = np.diag(np.full(6, 1000))
    conf_matrix[4, 1] = 50  # 4 taken for 1: counts for both
    conf_matrix[2, 5] = 30
    conf_matrix[0, 0] = 10**6  # many pixels, none confused
    assert most_confused_classes(conf_matrix, 2).tolist() == [1, 4]
    assert most_confused_classes(conf_matrix, 4).tolist() == [1, 2, 4, 5]


def test_report_of_150_classes_has_a_readable_picture_and_the_full_matrix(tmp_path):
    names = [f"class {i}" for i in range(150)]
    rng = np.random.default_rng(0)
    conf_matrix = np.diag(rng.integers(100, 1000, 150)) + rng.integers(0, 3, (150, 150))
    conf_matrix[7, 99] = 500
    iou, acc = per_class_metrics(conf_matrix)
    summary = {"pACC": 1.0, "mACC": 1.0, "mIoU": 1.0, "fwIoU": 1.0}
    write_report(str(tmp_path), summary, class_report(names, iou, acc, conf_matrix), conf_matrix, names)

    picture = Image.open(tmp_path / "confusion_matrix.png")
    # 31 columns (30 classes and "other classes") at 0.4 inch, 100 dpi; all 150 would need over 6000 pixels.
    assert MAX_PLOTTED_CLASSES == 30
    assert 1200 < picture.size[0] < 2000 and picture.size[1] < 2000
    assert {7, 99} <= set(most_confused_classes(conf_matrix, MAX_PLOTTED_CLASSES).tolist())
    with open(tmp_path / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == names and len(rows) == 151
    assert [int(v) for v in rows[8][1:]] == conf_matrix[7].tolist()


def test_report_of_few_classes_shows_them_all(tmp_path):
    names = ["sea", "sky", "boat"]
    conf_matrix = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 3]])
    iou, acc = per_class_metrics(conf_matrix)
    summary = {"pACC": 1.0, "mACC": 1.0, "mIoU": 1.0, "fwIoU": 1.0}
    write_report(str(tmp_path), summary, class_report(names, iou, acc, conf_matrix), conf_matrix, names)
    assert Image.open(tmp_path / "confusion_matrix.png").size[0] < 600
    with open(tmp_path / "confusion_matrix.csv") as f:
        assert [row[0] for row in csv.reader(f)][1:] == names
