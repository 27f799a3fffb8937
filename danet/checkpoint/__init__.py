from .checkpointer import SafeCheckpointer
from .errors import CheckpointError
from .layouts import LAYOUTS, WeightLayout, detect_layout, register_layout
from . import mmseg  # noqa: F401  (registers the mmsegmentation layouts)
