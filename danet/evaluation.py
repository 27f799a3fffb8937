"""Reporting of semantic segmentation metrics under the original project's names."""
from tabulate import tabulate

# (name in the original README, key in detectron2's SemSegEvaluator results)
SUMMARY_METRICS = (("PA %", "pACC"), ("mean PA %", "mACC"), ("mean IoU %", "mIoU"), ("FW IoU %", "fwIoU"))


def summary_table(sem_seg_results):
    """A one-row table of PA, mean PA, mIoU and FW IoU from SemSegEvaluator's results."""
    headers = [name for name, _ in SUMMARY_METRICS]
    row = [f"{sem_seg_results[key]:.2f}" for _, key in SUMMARY_METRICS]
    return tabulate([row], headers=headers, tablefmt="pipe")
