from . import mmseg, official, torchvision  # noqa: F401  (registers their layouts)
from .checkpointer import SafeCheckpointer, read_checkpoint, to_project_names
from .download import local_checkpoint
from .errors import CheckpointError
from .layouts import LAYOUTS, WeightLayout, detect_layout, register_layout
