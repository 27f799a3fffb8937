from .segmentation import NO_PREDICTION, blend_with_legend, colorize, side_by_side
from .attention import AttentionRecorder, HeadAttention, attention_picture, grid_points, most_varied_channels
