from .defaults import adapt_to_device, check_num_gpus, create_ddp_model, trainer_defaults
from .inference import SegmentationPredictor, build_inference_model
from .launch import cluster_environment, launch
from .lr_scheduler import SCHEDULERS, build_lr_scheduler
from .optimizer import build_optimizer
from .preemption import (
    PREEMPTED_EXIT_STATUS,
    PreemptionHook,
    build_preemption_hook,
    resume_requested,
    shield_data_workers,
)
