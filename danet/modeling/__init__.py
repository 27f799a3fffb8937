from .attention import ChannelAttention, FeatureSimilarityPositionAttention, PositionAttention
from .backbone import build_dilated_resnet_backbone
from .danet_head import DANetHead
from .memory_saving import apply_memory_saving
from .segmentor import DANetSegmentor
from .test_time_augmentation import SemanticSegmentorWithTTA, build_test_time_segmentor
