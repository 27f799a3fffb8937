"""DANet for detectron2. Importing this package registers the DANet head into
detectron2's SEM_SEG_HEADS_REGISTRY and the datasets of :mod:`danet.data.datasets`."""
from . import data, modeling  # noqa: F401  (registration)
from .config import add_danet_config
from .data.datasets import register_cityscapes_sem_seg
from .modeling import ChannelAttention, DANetHead, PositionAttention
