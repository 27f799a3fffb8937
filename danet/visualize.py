"""Pictures of predictions next to their ground truth, in the dataset's palette."""
import numpy as np


def colorize(labels, metadata):
    """An RGB picture of a [H, W] train-id map; the ignore label and unknown ids are black."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(metadata.stuff_colors)] = metadata.stuff_colors
    palette[metadata.ignore_label] = 0
    return palette[np.asarray(labels, dtype=np.uint8)]


def side_by_side(image, gt, prediction, metadata, gap=4):
    """image | ground truth | prediction, side by side with white gaps, as one RGB array.

    Args:
        image: [H, W, 3] uint8 RGB picture.
        gt, prediction: [H, W] train-id maps.
        metadata: has ``stuff_colors`` and ``ignore_label`` (e.g. ``MetadataCatalog.get(name)``).
    """
    if not image.shape[:2] == gt.shape == prediction.shape:
        raise ValueError(
            f"image {image.shape[:2]}, ground truth {gt.shape} and prediction {prediction.shape} differ in size"
        )
    spacer = np.full((image.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate(
        [image, spacer, colorize(gt, metadata), spacer, colorize(prediction, metadata)], axis=1
    )
