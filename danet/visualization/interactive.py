"""What the web demo (tools/web_demo.py) shows of an image: the prediction as
demo.py makes it, and for any pixel clicked its position-attention map and the
channels that respond most there after channel attention, drawn as
tools/visualize_attention.py draws them.

Images arrive as the bytes of a file; they are decoded as detectron2's
``read_image`` decodes files (EXIF orientation applied), after a check of their
size against a memory limit that reads only the file's header.
"""

import io
from dataclasses import dataclass

import torch
from PIL import Image

from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy

from ..engine import SegmentationPredictor
from ..errors import InputError
from ..modeling import build_test_time_segmentor
from .attention import AttentionRecorder, channel_panels, point_panels, scaled_for_panels

# Memory that segmenting an image takes per pixel of the image itself (the model
# runs at the config's test size, whatever the image's size): the logits at the
# image's size are 4 bytes per class, counted twice for the sum of test-time
# augmentation's views or the resize that makes them; the rest covers the image,
# the train ids and the pictures sent to the page.
BYTES_PER_PIXEL_AND_CLASS = 8
BYTES_PER_PIXEL = 64


class ImageTooLargeError(InputError):
    """An image whose segmentation would take more memory than the limit allows."""


def segmentation_bytes(height, width, num_classes):
    """The memory segmenting a (height, width) image takes beyond the model's own, an estimate."""
    return height * width * (BYTES_PER_PIXEL_AND_CLASS * num_classes + BYTES_PER_PIXEL)


def decode_image(data, name, memory_limit_mb, num_classes):
    """The [H, W, 3] uint8 RGB image in the file bytes ``data`` (named ``name``
    in messages), as detectron2's ``read_image(path, "RGB")`` reads the file.

    Raises:
        ImageTooLargeError: segmenting it would take more than ``memory_limit_mb``
            (checked on the file's header, before decoding).
        InputError: the bytes are not an image Pillow can read.
    """
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{name}: {e}") from e
    except Image.UnidentifiedImageError:
        raise InputError(f"{name} is not an image Pillow can read: give a PNG, JPEG, BMP, TIFF or WebP file") from None
    except Exception as e:  # noqa: BLE001  (any other failure to read the header)
        raise InputError(f"{name} cannot be read as an image: {e}") from e
    needed_mb = segmentation_bytes(height, width, num_classes) / 2**20
    if needed_mb > memory_limit_mb:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} pixels: segmenting it takes about {needed_mb:.0f} MB, more than the "
            f"memory limit of {memory_limit_mb:g} MB (--memory-limit-mb); use a smaller image or raise the limit"
        )
    try:
        return convert_PIL_to_numpy(_apply_exif_orientation(image), "RGB")
    except Exception as e:  # noqa: BLE001  (a truncated or corrupt file fails only when decoded)
        raise InputError(f"{name} cannot be decoded: {e}") from e


class InteractiveSegmenter:
    """Segments RGB images as demo.py does, and gives the head's attention of
    each as tools/visualize_attention.py draws it.

    The prediction is the config's inference (``TEST.AUG.ENABLED``,
    ``TEST.SLIDING_WINDOW``). The attention is that of one forward of the
    whole image at the test size, as the tool's: recorded during the
    prediction when the prediction is that one forward, else computed by
    :meth:`attention` when first asked for (with windows or several views,
    no single forward of the prediction attended over the whole image).
    The caller serialises calls: the recorder's hooks are shared.
    """

    def __init__(self, cfg, model):
        inference = build_test_time_segmentor(cfg, model, augment=cfg.TEST.AUG.ENABLED)
        self.predictor = SegmentationPredictor(cfg, inference)
        self.whole_image_predictor = SegmentationPredictor(cfg, model)
        self.recorder = AttentionRecorder(model)
        self.prediction_is_one_forward = inference is model

    def segment(self, image):
        """[K, H, W] logits of the image, and its HeadAttention, or None when
        :meth:`attention` has to compute it."""
        if not self.prediction_is_one_forward:
            return self.predictor(image), None
        return self._recorded(self.predictor, image)

    def attention(self, image):
        """The HeadAttention of one forward of the whole image at the test size."""
        return self._recorded(self.whole_image_predictor, image)[1]

    def _recorded(self, predictor, image):
        """``predictor(image)`` with the attention recorded: (logits, the HeadAttention
        of its one forward)."""
        with self.recorder:
            logits = predictor(image)
        (attention,) = self.recorder.take()
        return logits, attention


@dataclass
class PointAttention:
    """What one image point attended to, as pictures at most ``panel_width`` wide.

    Attributes:
        point: (x, y) in image pixels.
        cell: (row, col) of the feature cell that holds it.
        position_map: [h, w, 3] its position-attention weights as a heat map, the point marked.
        channels: the channels that respond most at the point after channel
            attention, strongest first (see :func:`strongest_channels_at`).
        scores: their responses there, in standard deviations above their mean over the image.
        channel_maps: [h, w, 3] each channel's attended response as a heat map.
    """

    point: tuple
    cell: tuple
    position_map: object
    channels: list
    scores: list
    channel_maps: list


def explain_point(attention, image, point, panel_width=480, num_channels=4):
    """The PointAttention of image point (x, y) of ``image``, from its HeadAttention."""
    cell = attention.cell(point, image.shape[:2])
    small_image, scale = scaled_for_panels(image, panel_width)
    (position_map,) = point_panels(attention, image.shape[:2], [point], small_image, scale)
    channels, scores = strongest_channels_at(attention.channel_output, cell, num_channels)
    return PointAttention(point, cell, position_map, channels, scores, channel_panels(attention, channels, small_image))


def strongest_channels_at(response, cell, count):
    """The ``count`` channels of a [C, h, w] response that respond most at
    feature cell (row, col) compared with the rest of the image, and their
    scores: the response at the cell minus the channel's mean over the image,
    in units of its standard deviation. A channel flat over the image (a
    large response everywhere says nothing of the point) scores 0."""
    flat = response.flatten(1).double()
    spread = flat.std(dim=1)
    at_cell = response[:, cell[0], cell[1]].double()
    scores = torch.where(spread > 0, (at_cell - flat.mean(dim=1)) / spread.clamp(min=1e-300), 0.0)
    order = torch.argsort(scores, descending=True, stable=True)[:count]
    return order.tolist(), scores[order].tolist()
