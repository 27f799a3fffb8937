"""Adjustments that let detectron2's DefaultTrainer run safely, also on CPU."""
import contextlib
import functools
import logging

import torch

from detectron2.engine import defaults
from detectron2.utils import comm

from ..checkpoint import SafeCheckpointer
from ..errors import InputError

logger = logging.getLogger(__name__)
_d2_create_ddp_model = defaults.create_ddp_model


def create_ddp_model(model, **kwargs):
    """detectron2's create_ddp_model with ``device_ids`` the model's own device:
    None on CPU (gloo), which DistributedDataParallel requires for CPU modules,
    and on CUDA the GPU launch() gave this process. detectron2 would pass the
    local rank, an invalid ordinal where each task sees only its own GPU
    (``srun --gpus-per-task 1``: every process uses its device 0)."""
    if comm.get_world_size() > 1:
        device = next(model.parameters()).device
        kwargs.setdefault("device_ids", None if device.type == "cpu" else [device.index])
    return _d2_create_ddp_model(model, **kwargs)


@contextlib.contextmanager
def trainer_defaults(cfg):
    """While DefaultTrainer.__init__ runs, have it build a CPU-capable DDP model
    and a SafeCheckpointer (skipping classifiers of another NUM_CLASSES when
    MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER) instead of its own module-level choices."""
    skip = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES if cfg.MODEL.WEIGHTS_SKIP_MISMATCHED_CLASSIFIER else None
    checkpointer = functools.partial(SafeCheckpointer, skip_mismatched_classes=skip)
    saved = defaults.create_ddp_model, defaults.DetectionCheckpointer
    defaults.create_ddp_model, defaults.DetectionCheckpointer = create_ddp_model, checkpointer
    try:
        yield
    finally:
        defaults.create_ddp_model, defaults.DetectionCheckpointer = saved


def adapt_to_device(cfg):
    """Check MODEL.DEVICE and map SyncBN to naiveSyncBN for multi-process CPU
    training, where torch's SyncBatchNorm needs CUDA. Modifies ``cfg`` in place."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but no CUDA device is available: "
            "add `MODEL.DEVICE cpu` to the command line."
        )
    if cfg.MODEL.DEVICE == "cpu" and comm.get_world_size() > 1:
        for key in ("RESNETS", "SEM_SEG_HEAD"):
            if cfg.MODEL[key].NORM == "SyncBN":
                cfg.MODEL[key].NORM = "naiveSyncBN"
                logger.info(f"MODEL.{key}.NORM: SyncBN needs CUDA; using naiveSyncBN on CPU.")


def check_num_gpus(cfg, num_gpus):
    """Refuse ``--num-gpus`` beyond the visible GPUs when MODEL.DEVICE is CUDA,
    before launch() starts one failing process per GPU. With MODEL.DEVICE cpu
    the processes train on CPU (gloo)."""
    available = torch.cuda.device_count()
    if cfg.MODEL.DEVICE.startswith("cuda") and num_gpus > available:
        raise InputError(
            f"--num-gpus {num_gpus} with MODEL.DEVICE {cfg.MODEL.DEVICE!r}, but {available} CUDA devices "
            "are available: lower --num-gpus, or add `MODEL.DEVICE cpu` to train in CPU processes."
        )
