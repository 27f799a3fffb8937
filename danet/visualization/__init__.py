from .segmentation import NO_PREDICTION, blend, blend_with_legend, class_shares, colorize, side_by_side
from .attention import (
    AttentionRecorder,
    HeadAttention,
    attention_picture,
    channel_panels,
    grid_points,
    most_varied_channels,
    point_panels,
    scaled_for_panels,
)
from .interactive import (
    ImageTooLargeError,
    InteractiveSegmenter,
    PointAttention,
    decode_image,
    explain_point,
    segmentation_bytes,
    strongest_channels_at,
)
