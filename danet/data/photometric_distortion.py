"""mmsegmentation's ``PhotoMetricDistortion`` as a detectron2 augmentation:
the same steps, probabilities, order, random draws, arithmetic and HSV
conversion, so with numpy's global generator in the same state both give the
same pixels."""
import cv2
import numpy as np

from detectron2.data import transforms as T

from ..errors import InputError

# OpenCV's conversions to and from HSV (H in [0, 180)) for each INPUT.FORMAT.
_HSV_CODES = {
    "RGB": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
    "BGR": (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR),
}


def _scale_and_shift(values, alpha=1, beta=0):
    """``values * alpha + beta`` in float32, clipped to [0, 255] and truncated to uint8."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


class PhotoMetricDistortionTransform(T.ColorTransform):
    """Colour changes of a uint8 image [H, W, 3] in ``image_format``; a step
    whose parameter is None is skipped. Order: brightness, contrast (if
    ``contrast_first``), saturation, hue, contrast (if not). Labels and
    coordinates are unchanged, as in every detectron2 ColorTransform."""

    def __init__(self, image_format, brightness_delta, contrast_first, contrast_alpha, saturation_alpha, hue_shift):
        super().__init__(self._distort)
        self._set_attributes(locals())

    def _distort(self, img):
        if self.brightness_delta is not None:
            img = _scale_and_shift(img, beta=self.brightness_delta)
        if self.contrast_first and self.contrast_alpha is not None:
            img = _scale_and_shift(img, alpha=self.contrast_alpha)
        # Saturation and hue each convert to HSV and back, as mmseg does.
        if self.saturation_alpha is not None:
            img = self._in_hsv(img, 1, lambda s: _scale_and_shift(s, alpha=self.saturation_alpha))
        if self.hue_shift is not None:
            img = self._in_hsv(img, 0, lambda h: (h.astype(int) + self.hue_shift) % 180)
        if not self.contrast_first and self.contrast_alpha is not None:
            img = _scale_and_shift(img, alpha=self.contrast_alpha)
        return img

    def _in_hsv(self, img, channel, change):
        """``img`` with ``change`` applied to one HSV channel (0 hue, 1 saturation),
        through OpenCV's colour conversions as mmseg does."""
        to_hsv, from_hsv = _HSV_CODES[self.image_format]
        hsv = cv2.cvtColor(np.ascontiguousarray(img), to_hsv)
        hsv[:, :, channel] = change(hsv[:, :, channel])
        return cv2.cvtColor(hsv, from_hsv)


class PhotoMetricDistortion(T.Augmentation):
    """mmseg's ``PhotoMetricDistortion``: each step with probability 0.5,
    brightness shifted by a value in [-brightness_delta, brightness_delta],
    contrast and saturation scaled by a factor in their ranges, hue (OpenCV's
    H, 0..179) shifted by an int in [-hue_delta, hue_delta); contrast goes
    before saturation and hue or after them, at random.

    Draws, from numpy's global generator in mmseg's order: ``randint(2)``
    (brightness?) [``uniform`` delta], ``randint(2)`` (contrast last?),
    [contrast first: ``randint(2)`` [``uniform``]], ``randint(2)``
    (saturation?) [``uniform``], ``randint(2)`` (hue?) [``randint``],
    [contrast last: ``randint(2)`` [``uniform``]].

    Args:
        image_format: the image's channel order, "RGB" or "BGR" (``INPUT.FORMAT``);
            mmseg's images are BGR, and the HSV conversion follows the format.
    """

    def __init__(
        self,
        image_format="RGB",
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
    ):
        super().__init__()
        if image_format not in _HSV_CODES:
            raise InputError(
                f"INPUT.PHOTOMETRIC_DISTORTION needs INPUT.FORMAT 'RGB' or 'BGR', got {image_format!r}"
            )
        self._init(locals())

    def get_transform(self, image):
        brightness = np.random.uniform(-self.brightness_delta, self.brightness_delta) if np.random.randint(2) else None
        contrast_first = np.random.randint(2) == 1
        contrast = self._draw_contrast() if contrast_first else None
        saturation = np.random.uniform(*self.saturation_range) if np.random.randint(2) else None
        hue = np.random.randint(-self.hue_delta, self.hue_delta) if np.random.randint(2) else None
        if not contrast_first:
            contrast = self._draw_contrast()
        return PhotoMetricDistortionTransform(self.image_format, brightness, contrast_first, contrast, saturation, hue)

    def _draw_contrast(self):
        """A contrast factor, or None (the step skipped) with probability 0.5."""
        return np.random.uniform(*self.contrast_range) if np.random.randint(2) else None
