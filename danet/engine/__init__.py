from .defaults import adapt_to_device, check_num_gpus, create_ddp_model, trainer_defaults
from .inference import SegmentationPredictor, build_inference_model
