"""DANet for detectron2. Importing this package registers the DANet head and the
Cityscapes-layout datasets of :mod:`danet.datasets`."""
from .attention import ChannelAttention, PositionAttention
from .config import add_danet_config
from .head import DANetHead
from .datasets import register_cityscapes_sem_seg
