"""mmcv's image resize: OpenCV bilinear for images, OpenCV nearest for
labels, sizes rounded as ``mmcv.imrescale`` rounds them.

mmseg's training scale (:class:`RandomRescale`, ``INPUT.RESIZE_TYPE
"scale"``), the test loader and ``demo.py`` (:class:`Rescale`) and test-time
augmentation (``SemanticSegmentorWithTTA``) all resize through
:func:`resize_image`, so an image is scaled the same way whichever route it
takes, and the way mmsegmentation scales it. detectron2's ``ResizeTransform``
uses PIL instead, which antialiases when it shrinks an image and gives other
pixels (``benchmarks/interpolation_gap.py`` measures by how much); it remains
the resize of ``INPUT.RESIZE_TYPE "shortest_edge"``, detectron2's and the
DANet authors' training scale (their code resizes with PIL too).
"""
import cv2
import numpy as np

from detectron2.data import transforms as T

from ..errors import InputError


def rescale_size(height, width, scale):
    """(h, w) of a ``height`` x ``width`` image resized keeping its aspect
    ratio, as mmcv's ``rescale_size``.

    ``scale`` is a factor (a number), or a pair of bounds (in either order):
    the image becomes as large as it can with its long side at most the larger
    bound and its short side at most the smaller one. Each side is rounded
    half up, ``int(side * factor + 0.5)``.
    """
    if isinstance(scale, (int, float)):
        factor = scale
    else:
        factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)


def resize_image(image, size, nearest=False):
    """``image`` [H, W] or [H, W, C] (uint8 or float) resized to ``size`` (h, w)
    with OpenCV: bilinear, or nearest for labels (``nearest=True``).

    uint8 images stay uint8 (OpenCV's fixed-point bilinear, as mmcv's
    ``imresize``); an image already of that size is returned unchanged.
    """
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)
    # OpenCV drops a channel axis of length 1.
    return resized.reshape((height, width) + image.shape[2:])


class OpenCVResizeTransform(T.Transform):
    """Resize from (h, w) to (new_h, new_w) through :func:`resize_image`:
    images bilinear, labels nearest."""

    def __init__(self, h, w, new_h, new_w):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        return resize_image(img, (self.new_h, self.new_w))

    def apply_segmentation(self, segmentation):
        return resize_image(segmentation, (self.new_h, self.new_w), nearest=True)

    def apply_coords(self, coords):
        coords[:, 0] = coords[:, 0] * (self.new_w / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h / self.h)
        return coords

    def inverse(self):
        return OpenCVResizeTransform(self.new_h, self.new_w, self.h, self.w)


def positive_int_pair(value, key, names="(h, w)"):
    """A pair of positive ints from config key or option ``key``, an int ``n``
    meaning (n, n); an InputError naming ``key`` otherwise."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise InputError(f"{key} must be a positive int or a pair {names} of them, got {value!r}")
    return pair


def scale_pair(value, key):
    """A (long, short) pair of positive ints from config key ``key``: an int
    ``s`` is the square (s, s), which bounds only the long side."""
    pair = positive_int_pair(value, key, "(long, short)")
    return max(pair), min(pair)


class Rescale(T.Augmentation):
    """Resize keeping the aspect ratio to the largest size within ``scale``
    (long, short), as mmseg's ``Resize(scale, keep_ratio=True)`` and, with
    ``scale=(MAX_SIZE_TEST, MIN_SIZE_TEST)``, as detectron2's test-time
    ``ResizeShortestEdge``: the short side becomes ``short`` unless the long
    side would exceed ``long``. A bound of 0 leaves images as they are
    (detectron2's ``MIN_SIZE_TEST 0``)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = tuple(scale)

    def get_transform(self, image):
        if min(self.scale) == 0:
            return T.NoOpTransform()
        height, width = image.shape[:2]
        return OpenCVResizeTransform(height, width, *rescale_size(height, width, self.scale))


class RandomRescale(T.Augmentation):
    """mmseg's ``RandomResize(scale, ratio_range, keep_ratio=True)``: a ratio
    drawn uniformly from ``ratio_range`` (one ``np.random.random_sample()``)
    multiplies both bounds of ``scale`` (long, short), each truncated to an
    int, and the image is resized within them as :class:`Rescale` does."""

    def __init__(self, scale, ratio_range):
        super().__init__()
        self.scale = tuple(scale)
        self.ratio_range = tuple(ratio_range)

    def get_transform(self, image):
        low, high = self.ratio_range
        ratio = np.random.random_sample() * (high - low) + low
        bounds = tuple(int(side * ratio) for side in self.scale)
        height, width = image.shape[:2]
        return OpenCVResizeTransform(height, width, *rescale_size(height, width, bounds))
