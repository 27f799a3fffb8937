"""Pictures of segmentations in a class palette: blended with the image under a
legend (demo.py, the web demo), or image | ground truth | prediction side by
side (make demo); and the share of the pixels each class takes."""
import cv2
import numpy as np

NO_PREDICTION = 255


def colorize(labels, colors):
    """An RGB picture of a [H, W] train-id map; ids without a colour (the
    ignore label 255 among them) are black."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(colors)] = colors
    return palette[np.asarray(labels, dtype=np.uint8)]


def side_by_side(image, gt, prediction, colors, gap=4):
    """image | ground truth | prediction with white gaps, as one RGB array.

    Args:
        image: [H, W, 3] uint8 RGB picture.
        gt, prediction: [H, W] train-id maps.
        colors: [K, 3] RGB colour of each train id.
    """
    if not image.shape[:2] == gt.shape == prediction.shape:
        raise ValueError(
            f"image {image.shape[:2]}, ground truth {gt.shape} and prediction {prediction.shape} differ in size"
        )
    spacer = np.full((image.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([image, spacer, colorize(gt, colors), spacer, colorize(prediction, colors)], axis=1)


def blend(image, train_ids, colors, opacity=0.5):
    """The RGB image blended with the class colours; NO_PREDICTION pixels keep the image."""
    predicted = train_ids != NO_PREDICTION
    blended = image.astype(np.float32)
    blended[predicted] = (1 - opacity) * blended[predicted] + opacity * colors[train_ids[predicted]]
    return blended.round().astype(np.uint8)


def class_shares(train_ids, num_classes):
    """[num_classes] the fraction of all pixels of a [H, W] train-id map that
    each class takes (NO_PREDICTION pixels count in the total, for no class)."""
    counts = np.bincount(np.asarray(train_ids, np.uint8).ravel(), minlength=256)[:num_classes]
    return counts / max(1, np.asarray(train_ids).size)


def blend_with_legend(image, train_ids, names, colors, opacity=0.5):
    """The RGB image blended with the class colours, with a legend of the
    classes present to its right; NO_PREDICTION pixels keep the image."""
    present = [i for i in np.unique(train_ids) if i != NO_PREDICTION]
    row, swatch, font, scale = 18, 12, cv2.FONT_HERSHEY_SIMPLEX, 0.45
    text_width = max((cv2.getTextSize(names[i], font, scale, 1)[0][0] for i in present), default=0)
    legend = np.full((max(image.shape[0], row * len(present) + 6), swatch + text_width + 16, 3), 255, np.uint8)
    for k, i in enumerate(present):
        top = 4 + k * row
        legend[top : top + swatch, 4 : 4 + swatch] = colors[i]
        cv2.putText(legend, names[i], (swatch + 10, top + swatch - 1), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    canvas = np.full((legend.shape[0], image.shape[1] + legend.shape[1], 3), 255, np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = blend(image, train_ids, colors, opacity)
    canvas[:, image.shape[1] :] = legend
    return canvas
