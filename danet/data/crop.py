"""mmsegmentation's training crop and padding as detectron2 augmentations.

:class:`RandomCropCategoryRatio` is mmseg's ``RandomCrop(crop_size,
cat_max_ratio, ignore_index)``. detectron2's
``RandomCrop_CategoryAreaConstraint`` differs given the same draws: it tries
10 windows and keeps the 10th when none passes, where mmseg checks 10 and
then keeps an 11th, unchecked, window; and it compares ``max < sum * ratio``
rather than ``max / sum < ratio``.

:class:`PadToSize` pads as mmseg's ``SegDataPreProcessor(size=crop_size)``
does after normalisation: bottom and right, the image with the pixel mean
(0 once normalised), the label with the ignore value.
"""
import numpy as np

from detectron2.data import transforms as T


class RandomCropCategoryRatio(T.Augmentation):
    """A random ``crop_size`` (h, w) window, where no single class other than
    ``ignore_value`` covers ``cat_max_ratio`` or more of the labelled pixels.

    The window's top and left are drawn as ``np.random.randint(0, margin + 1)``
    (height first). With ``cat_max_ratio < 1`` a window that holds a single
    class, or a class with ``count / total >= cat_max_ratio``, is redrawn; after
    10 rejected windows an 11th is kept unchecked. A side shorter than the crop
    is kept whole (pad it with :class:`PadToSize`).
    """

    def __init__(self, crop_size, cat_max_ratio=1.0, ignore_value=255):
        super().__init__()
        self.crop_size = tuple(crop_size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_value = ignore_value

    def get_transform(self, image, sem_seg):
        window = self._draw(image.shape[:2])
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                if self._is_balanced(sem_seg, window):
                    break
                window = self._draw(image.shape[:2])
        top, left, height, width = window
        return T.CropTransform(left, top, width, height, image.shape[1], image.shape[0])

    def _draw(self, image_size):
        """(top, left, height, width) of a random window in an image of ``image_size``."""
        height, width = (min(c, s) for c, s in zip(self.crop_size, image_size))
        top = np.random.randint(0, image_size[0] - height + 1)
        left = np.random.randint(0, image_size[1] - width + 1)
        return top, left, height, width

    def _is_balanced(self, sem_seg, window):
        """Whether the window holds two classes or more, none covering
        ``cat_max_ratio`` of its labelled pixels or more (mmseg's ``cat_max_ratio``)."""
        top, left, height, width = window
        labels, counts = np.unique(sem_seg[top : top + height, left : left + width], return_counts=True)
        counts = counts[labels != self.ignore_value]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio


class MeanPadTransform(T.Transform):
    """Pads the bottom and right of an (h, w) image to (h + pad_h, w + pad_w):
    the image, as float32, with ``pixel_mean`` (per channel), the label with
    ``seg_pad_value``."""

    def __init__(self, h, w, pad_h, pad_w, pixel_mean, seg_pad_value):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        padded = np.empty((self.h + self.pad_h, self.w + self.pad_w) + img.shape[2:], np.float32)
        padded[...] = np.asarray(self.pixel_mean, np.float32)
        padded[: self.h, : self.w] = img
        return padded

    def apply_segmentation(self, segmentation):
        return np.pad(segmentation, ((0, self.pad_h), (0, self.pad_w)), constant_values=self.seg_pad_value)

    def apply_coords(self, coords):
        return coords

    def inverse(self):
        return T.CropTransform(0, 0, self.w, self.h, self.w + self.pad_w, self.h + self.pad_h)


class PadToSize(T.Augmentation):
    """Pads images smaller than ``size`` (h, w) at the bottom and right, the
    image with ``pixel_mean`` and the label with ``seg_pad_value``.

    The mean is a float, so a padded image is float32 (an image that needs no
    padding is left as it is, uint8): the model's normalisation
    ``(x - pixel_mean) / pixel_std`` turns the padding into exactly 0, as
    mmseg's data preprocessor pads after normalising.
    """

    def __init__(self, size, pixel_mean, seg_pad_value):
        super().__init__()
        self.size = tuple(size)
        self.pixel_mean = tuple(pixel_mean)
        self.seg_pad_value = seg_pad_value

    def get_transform(self, image):
        height, width = image.shape[:2]
        pad_h, pad_w = max(self.size[0] - height, 0), max(self.size[1] - width, 0)
        if pad_h == pad_w == 0:
            return T.NoOpTransform()
        return MeanPadTransform(height, width, pad_h, pad_w, self.pixel_mean, self.seg_pad_value)
