from .segmentation import NO_PREDICTION, blend_with_legend, colorize, side_by_side
