"""DANet for detectron2. Importing this package registers the DANet head."""
from .attention import ChannelAttention, PositionAttention
from .config import add_danet_config
from .head import DANetHead
