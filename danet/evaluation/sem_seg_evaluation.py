"""Semantic segmentation metrics: the original project's summary, a per-class
report (printed, JSON, CSV, confusion-matrix picture) and the official
Cityscapes evaluator."""
import csv
import json
import logging
import math
import os
from collections import OrderedDict

import numpy as np
import torch
from tabulate import tabulate

from detectron2.data import MetadataCatalog
from detectron2.evaluation import CityscapesSemSegEvaluator, SemSegEvaluator
from detectron2.utils.file_io import PathManager

from ..errors import InputError

logger = logging.getLogger(__name__)

# (name in the original README, key in detectron2's SemSegEvaluator results)
SUMMARY_METRICS = (("PA %", "pACC"), ("mean PA %", "mACC"), ("mean IoU %", "mIoU"), ("FW IoU %", "fwIoU"))


def _summary_row(sem_seg_results):
    """PA, mean PA, mIoU and FW IoU of SemSegEvaluator's results, in SUMMARY_METRICS' order."""
    return [sem_seg_results[key] for _, key in SUMMARY_METRICS]


def summary_table(sem_seg_results):
    """A one-row table of PA, mean PA, mIoU and FW IoU from SemSegEvaluator's results."""
    headers = [name for name, _ in SUMMARY_METRICS]
    return tabulate([_summary_row(sem_seg_results)], headers=headers, tablefmt="pipe", floatfmt=".2f")


def comparison_table(named_results):
    """The summary metrics of several runs (e.g. plain and TTA), one row each."""
    headers = ["inference"] + [name for name, _ in SUMMARY_METRICS]
    rows = [[name] + _summary_row(results) for name, results in named_results.items()]
    return tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".2f")


def per_class_metrics(conf_matrix):
    """IoU and accuracy per class from a [K, K] confusion matrix indexed
    [ground truth, prediction] over the evaluated pixels.

    IoU follows the Cityscapes benchmark: TP / (TP + FP + FN), undefined (NaN)
    only when that is 0/0, so a class predicted but absent from the ground
    truth scores 0. Accuracy (recall) is NaN for classes absent from the
    ground truth.
    """
    conf_matrix = conf_matrix.astype(float)
    tp = conf_matrix.diagonal()
    gt = conf_matrix.sum(axis=1)
    pred = conf_matrix.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    return iou, acc


class SemSegReportEvaluator(SemSegEvaluator):
    """detectron2's SemSegEvaluator with Cityscapes' IoU convention (see
    :func:`per_class_metrics`; detectron2 leaves classes absent from the ground
    truth out of mIoU) and a per-class report.

    The report is logged and, with an output directory, written there as
    ``sem_seg_per_class.json``, ``sem_seg_per_class.csv`` and
    ``confusion_matrix.png``.
    """

    def evaluate(self):
        """SemSegEvaluator's results with mIoU and per-class IoU by Cityscapes'
        convention (a class predicted but absent from the ground truth scores 0),
        logged per class and, with an output folder, written as the report files."""
        results = super().evaluate()
        if results is None:  # not the main process
            return None
        # SemSegEvaluator's matrix is [prediction, ground truth] with an extra
        # row/column for the ignore label.
        conf_matrix = self._conf_matrix[:-1, :-1].T
        iou, acc = per_class_metrics(conf_matrix)
        res = results["sem_seg"]
        miou = 100 * np.nanmean(iou) if not np.isnan(iou).all() else float("nan")
        if not np.isclose(miou, res["mIoU"], equal_nan=True):
            logger.info(
                f"mIoU {miou:.4f} with Cityscapes' convention (SemSegEvaluator's: {res['mIoU']:.4f}): "
                "some class is predicted but absent from the ground truth"
            )
        res["mIoU"] = miou
        for name, class_iou in zip(self._class_names, iou):
            res[f"IoU-{name}"] = 100 * class_iou
        report = class_report(self._class_names, iou, acc, conf_matrix)
        logger.info(
            "Per-class results:\n" + tabulate(report, headers="keys", tablefmt="pipe", floatfmt=".2f")
        )
        if self._output_dir:
            # Replace the file SemSegEvaluator saved with the numbers above.
            with PathManager.open(os.path.join(self._output_dir, "sem_seg_evaluation.pth"), "wb") as f:
                torch.save(res, f)
            write_report(self._output_dir, res, report, conf_matrix, self._class_names)
        return results


def class_report(class_names, iou, acc, conf_matrix):
    """One dict per class: IoU and accuracy in percent, pixel counts."""
    return [
        {
            "class": name,
            "IoU": 100 * iou[i],
            "ACC": 100 * acc[i],
            "gt_pixels": int(conf_matrix[i].sum()),
            "pred_pixels": int(conf_matrix[:, i].sum()),
        }
        for i, name in enumerate(class_names)
    ]


def write_report(output_dir, summary, report, conf_matrix, class_names):
    """Write the per-class report as JSON and CSV (NaN as null / empty) and the
    confusion matrix as a picture and a CSV of pixel counts into ``output_dir``."""
    PathManager.mkdirs(output_dir)
    nan_to_none = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    payload = {
        "summary": {name: nan_to_none(summary[key]) for name, key in SUMMARY_METRICS},
        "classes": [{k: nan_to_none(v) for k, v in row.items()} for row in report],
    }
    with PathManager.open(os.path.join(output_dir, "sem_seg_per_class.json"), "w") as f:
        json.dump(payload, f, indent=2)
    with PathManager.open(os.path.join(output_dir, "sem_seg_per_class.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(report[0]))
        writer.writeheader()
        writer.writerows(payload["classes"])
    plot_confusion_matrix(conf_matrix, class_names, os.path.join(output_dir, "confusion_matrix.png"))
    write_confusion_matrix_csv(conf_matrix, class_names, os.path.join(output_dir, "confusion_matrix.csv"))


# More classes than this make a picture whose labels cannot be read (ADE20K
# has 150): the picture then shows the most confused classes only, and the
# full matrix is in confusion_matrix.csv.
MAX_PLOTTED_CLASSES = 30


def most_confused_classes(conf_matrix, count):
    """Ids (ascending) of the ``count`` classes with the most misclassified
    pixels, counted both as ground truth and as prediction."""
    off_diagonal = conf_matrix - np.diag(conf_matrix.diagonal())
    confusion = off_diagonal.sum(axis=0) + off_diagonal.sum(axis=1)
    return np.sort(np.argsort(-confusion, kind="stable")[:count])


def plot_confusion_matrix(conf_matrix, class_names, path, max_classes=MAX_PLOTTED_CLASSES):
    """Save the confusion matrix, each ground-truth row normalised to 1, as a
    picture. Above ``max_classes`` classes only the most confused are drawn,
    with a last column "other classes" holding the rest of each row."""
    # The Agg canvas draws off-screen without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = conf_matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(conf_matrix, rows, out=np.zeros(conf_matrix.shape), where=rows > 0)
    title = "Confusion matrix (rows normalised)"
    row_names = col_names = list(class_names)
    if len(class_names) > max_classes:
        shown = most_confused_classes(conf_matrix, max_classes)
        normalised = normalised[shown]
        other = normalised.sum(axis=1) - normalised[:, shown].sum(axis=1)
        normalised = np.concatenate([normalised[:, shown], other[:, None]], axis=1)
        row_names = [class_names[i] for i in shown]
        col_names = row_names + ["other classes"]
        title = f"The {max_classes} most confused of {len(class_names)} classes (rows normalised)"
    size = 2 + 0.4 * len(col_names)
    figure = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(col_names)), col_names, rotation=90, fontsize=8)
    axes.set_yticks(range(len(row_names)), row_names, fontsize=8)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    with PathManager.open(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)


def write_confusion_matrix_csv(conf_matrix, class_names, path):
    """The full matrix of pixel counts, rows ground truth, columns prediction."""
    with PathManager.open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ground truth \\ prediction"] + list(class_names))
        writer.writerows([name] + row.astype(int).tolist() for name, row in zip(class_names, conf_matrix))


class CityscapesOfficialEvaluator(CityscapesSemSegEvaluator):
    """detectron2's CityscapesSemSegEvaluator (cityscapesScripts, official
    numbers), reported under ``sem_seg_cityscapes`` so that it can run beside
    :class:`SemSegReportEvaluator`, which reports under ``sem_seg``."""

    def __init__(self, dataset_name):
        from cityscapesscripts.helpers.labels import trainId2label

        meta = MetadataCatalog.get(dataset_name)
        train_names = [trainId2label[i].name for i in range(19)]
        if not getattr(meta, "gt_dir", None) or list(getattr(meta, "stuff_classes", [])) != train_names:
            raise InputError(
                f"TEST.CITYSCAPES_EVALUATOR needs dataset {dataset_name!r} to be Cityscapes: metadata "
                "gt_dir (the gtFine/<split> folder) and the 19 train-id stuff_classes; "
                "set TEST.CITYSCAPES_EVALUATOR False for other datasets"
            )
        super().__init__(dataset_name)

    def evaluate(self):
        results = super().evaluate()
        return None if results is None else OrderedDict(sem_seg_cityscapes=results["sem_seg"])


def build_sem_seg_evaluators(cfg, dataset_name, output_dir):
    """The project's evaluator, and the official Cityscapes one when
    ``TEST.CITYSCAPES_EVALUATOR``."""
    evaluators = [SemSegReportEvaluator(dataset_name, distributed=True, output_dir=output_dir)]
    if cfg.TEST.CITYSCAPES_EVALUATOR:
        evaluators.append(CityscapesOfficialEvaluator(dataset_name))
    return evaluators
