"""Inference-time wrappers for a SemanticSegmentor: multi-scale + flip testing
(the DANet authors' evaluation protocol) and sliding-window inference, which
bounds the memory of position attention on large images.

Views are combined at the output resolution by averaging their logits, as the
authors' code does (``TEST.AUG.AVERAGE "logits"``), or their softmax
probabilities, as mmsegmentation's TTA does (``"probabilities"``); with one
scale of 1.0, no flip and no window, the result is exactly the wrapped model's
output.
"""
import torch
from torch import nn

from ..data.resize import positive_int_pair, rescale_size, resize_image
from ..errors import InputError
from .segmentor import resize_logits

AVERAGES = ("logits", "probabilities")


def check_window(crop_size, stride, keys=("TEST.SLIDING_WINDOW.CROP_SIZE", "TEST.SLIDING_WINDOW.STRIDE")):
    """The window (h, w) and its stride (h, w) as pairs of positive ints;
    an InputError naming ``keys`` (the config keys or options they came from)
    when they are not, or when the stride exceeds the window."""
    crop_size, stride = positive_int_pair(crop_size, keys[0]), positive_int_pair(stride, keys[1])
    if any(s > c for s, c in zip(stride, crop_size)):
        raise InputError(
            f"{keys[1]} {stride} must not exceed {keys[0]} {crop_size}: windows would leave pixels unpredicted"
        )
    return crop_size, stride


def window_starts(length, window, stride):
    """Start offsets of windows covering ``[0, length)``; the last one ends at
    ``length`` so no window reaches past the image (and needs no padding)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def sliding_window_logits(image, segment, crop_size=None, stride=None):
    """Logits [K, H, W] of a [C, H, W] image segmented window by window.

    The one implementation of the sliding window, for the PyTorch segmentor
    (:class:`SemanticSegmentorWithTTA`) and the exported runner
    (``danet.export.segment_image``). Windows of ``crop_size`` (h, w), moved
    by ``stride`` (h, w), are clipped at the border by moving them back inside
    (:func:`window_starts`), so no padding enters position attention; where
    windows overlap their logits are averaged. An image that fits in one window
    (or ``crop_size`` None) is segmented whole.

    Args:
        image: anything sliced as ``image[:, top:bottom, left:right]`` with a
            ``shape`` (a torch tensor, a numpy array).
        segment: maps a window of ``image`` to a torch tensor of its logits
            [K, h, w] at the window's size.
    """
    height, width = image.shape[-2:]
    if crop_size is None or (height <= crop_size[0] and width <= crop_size[1]):
        return segment(image)
    crop_h, crop_w = crop_size
    total = count = None
    for top in window_starts(height, crop_h, stride[0]):
        for left in window_starts(width, crop_w, stride[1]):
            logits = segment(image[:, top : top + crop_h, left : left + crop_w])
            if total is None:
                total = logits.new_zeros((logits.shape[0], height, width))
                count = logits.new_zeros((1, height, width))
            total[:, top : top + crop_h, left : left + crop_w] += logits
            count[:, top : top + crop_h, left : left + crop_w] += 1
    return total / count


class SemanticSegmentorWithTTA(nn.Module):
    """Runs a :class:`SemanticSegmentor` over several views of each image and
    averages their logits (or, with ``average="probabilities"``, their softmax)
    at the output resolution.

    The views are every scale in ``scales`` (a ratio of the image the model
    is given, i.e. after the test loader's resize), each also mirrored when
    ``flip``. A view larger than ``crop_size`` is segmented window by window
    with ``stride``; the logits of overlapping windows are averaged (as
    mmsegmentation's slide inference does), then resized to the output size
    with ``align_corners``. A window never extends past the image: it is
    moved back inside instead of padded, so no padding enters position
    attention, which attends over every position.
    """

    def __init__(
        self,
        model,
        scales=(1.0,),
        flip=False,
        crop_size=None,
        stride=None,
        average="logits",
        align_corners=False,
    ):
        super().__init__()
        if not scales or any(s <= 0 for s in scales):
            raise InputError(f"TEST.AUG.SCALES must be a non-empty list of positive ratios, got {scales!r}")
        if average not in AVERAGES:
            raise InputError(f"TEST.AUG.AVERAGE must be one of {AVERAGES}, got {average!r}")
        if crop_size is not None:
            crop_size, stride = check_window(crop_size, stride)
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        self.model = model
        self.scales = tuple(scales)
        self.flip = flip
        self.crop_size = crop_size
        self.stride = stride
        self.average = average
        self.align_corners = align_corners

    @classmethod
    def from_config(cls, cfg, model, augment):
        """Sliding window from ``TEST.SLIDING_WINDOW``; scales, flip and average
        from ``TEST.AUG`` when ``augment``, else the logits of the single unflipped view."""
        window = cfg.TEST.SLIDING_WINDOW
        return cls(
            model,
            scales=cfg.TEST.AUG.SCALES if augment else (1.0,),
            flip=cfg.TEST.AUG.FLIP if augment else False,
            crop_size=window.CROP_SIZE if window.ENABLED else None,
            stride=window.STRIDE if window.ENABLED else None,
            average=cfg.TEST.AUG.AVERAGE if augment else "logits",
            align_corners=cfg.MODEL.DANET.ALIGN_CORNERS,
        )

    def forward(self, batched_inputs):
        """Same inputs and outputs as SemanticSegmentor in inference: a list of
        ``{"sem_seg": logits [K, height, width]}``."""
        return [{"sem_seg": self._segment(x)} for x in batched_inputs]

    def _segment(self, inputs):
        """Logits [K, height, width] of one input: its views at every scale (and
        flipped) averaged, as logits or as probabilities (``average``)."""
        image = inputs["image"]
        height, width = image.shape[-2:]
        out_size = (inputs.get("height", height), inputs.get("width", width))
        total = 0
        views = 0
        for scale in self.scales:
            scaled = self._resize(image, scale)
            for flip in (False, True) if self.flip else (False,):
                view = scaled.flip(-1) if flip else scaled
                logits = self._segment_view(view, out_size)
                if self.average == "probabilities":
                    logits = logits.softmax(dim=0)
                total = total + (logits.flip(-1) if flip else logits)
                views += 1
        return total / views

    @staticmethod
    def _resize(image, scale):
        """A [C, H, W] image resized by ``scale`` as mmseg's test-time
        ``Resize(scale_factor=scale, keep_ratio=True)``: OpenCV bilinear through
        the data pipeline's resize (uint8 stays uint8), whichever caller gave it."""
        height, width = image.shape[-2:]
        size = rescale_size(height, width, rescale_size(height, width, scale))
        if size == (height, width):
            return image
        resized = resize_image(image.permute(1, 2, 0).cpu().numpy(), size)
        return torch.from_numpy(resized).permute(2, 0, 1).to(image.device)

    def _segment_view(self, image, out_size):
        """Logits [K, *out_size] of one view, whole or window by window."""
        if self.crop_size is None:
            return self._run(image, out_size)
        def segment(window):
            return self._run(window, window.shape[-2:])

        logits = sliding_window_logits(image, segment, self.crop_size, self.stride)
        return resize_logits(logits, out_size, self.align_corners)

    def _run(self, image, out_size):
        """The wrapped model's logits of one image, resized to ``out_size``."""
        height, width = out_size
        return self.model([{"image": image, "height": height, "width": width}])[0]["sem_seg"]


def build_test_time_segmentor(cfg, model, augment=False):
    """Wrap ``model`` for test-time augmentation (when ``augment``) and/or the
    sliding window (when ``TEST.SLIDING_WINDOW.ENABLED``); ``model`` itself
    when neither applies."""
    if not augment and not cfg.TEST.SLIDING_WINDOW.ENABLED:
        return model
    return SemanticSegmentorWithTTA.from_config(cfg, model, augment)
