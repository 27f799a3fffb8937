from .defaults import adapt_to_device, create_ddp_model, trainer_defaults
from .launch import cluster_environment, launch
from .preemption import (
    PREEMPTED_EXIT_STATUS,
    PreemptionHook,
    build_preemption_hook,
    resume_requested,
    shield_data_workers,
)
