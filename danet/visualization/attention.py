"""Pictures of what DANet attends to, as in the paper's Figure 5: for chosen
image points, their row of the position-attention matrix as a heat map over the
image; for a few channels, their response after channel attention; and the
prediction beside them.

Forward hooks record the position-attention module's input and the
channel-attention module's output. Only the rows of the chosen points are
computed from them, O(N * C) each: the N x N matrix is never built.
"""

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError
from ..modeling import DANetHead, FeatureSimilarityPositionAttention, PositionAttention
from ..modeling.chunked_attention import softmax_dtype
from .segmentation import blend_with_legend

CAPTION_HEIGHT = 20
GAP = 4


@dataclass
class HeadAttention:
    """What the DANet head attended to in one image.

    Attributes:
        position_module: the head's position-attention module.
        position_input: [C, h, w] its input.
        channel_output: [C, h, w] the channel-attention module's output, the
            attended response of each channel.
        stride: output stride of the feature map the head reads.
        input_size: (height, width) of the model's input, the image after the
            test loader's resize. Feature cell (i, j) covers input pixels
            [i * stride, (i + 1) * stride) x [j * stride, (j + 1) * stride), as
            when the head's logits are upsampled by the stride.
    """

    position_module: torch.nn.Module
    position_input: torch.Tensor
    channel_output: torch.Tensor
    stride: int
    input_size: tuple

    @property
    def feature_size(self):
        return tuple(self.position_input.shape[-2:])

    def cell(self, point, image_size):
        """The feature cell (row, col) of image point (x, y), in pixels of the
        (height, width) image the model's input was resized from."""
        x, y = point
        height, width = image_size
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"point ({x:g}, {y:g}) is outside the image ({width}x{height} pixels)")
        # Pixel centres, in the pixels of the resized input, then in cells.
        row = int((y + 0.5) * self.input_size[0] / height // self.stride)
        col = int((x + 0.5) * self.input_size[1] / width // self.stride)
        return min(row, self.feature_size[0] - 1), min(col, self.feature_size[1] - 1)

    @torch.no_grad()
    def position_rows(self, cells):
        """Rows of the position-attention matrix for feature cells [(row, col)]:
        [P, h, w], the weights of each cell over all positions (summing to one)."""
        query, key = _query_and_key(self.position_module, self.position_input, cells)
        energy = query.transpose(0, 1) @ key  # [P, N]; DANet does not scale it
        rows = energy.softmax(dim=-1, dtype=softmax_dtype(energy))
        return rows.reshape(len(cells), *self.feature_size)

    def to_picture(self, maps, size):
        """[M, h, w] maps at the feature resolution -> [M, *size] over the image:
        upsampled by the stride, cropped to the model's input, resized to ``size``."""
        maps = F.interpolate(maps[None].float(), scale_factor=self.stride, mode="bilinear", align_corners=False)
        maps = maps[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0]


def _query_and_key(module, features, cells):
    """Queries [Ck, P] at ``cells`` and keys [Ck, N] of ``module`` on features [C, h, w]."""
    channels, _, width = features.shape
    tokens = features.reshape(channels, -1)
    at_cells = tokens[:, [row * width + col for row, col in cells]]
    if isinstance(module, PositionAttention):
        query = module.query(at_cells[None, :, :, None])[0, :, :, 0]
        return query, module.key(features[None])[0].flatten(1)
    if isinstance(module, FeatureSimilarityPositionAttention):
        return at_cells, tokens
    raise InputError(f"Cannot draw the position attention of {type(module).__name__}: not a DANet module")


class AttentionRecorder:
    """A context manager recording, for every forward of a DANet segmentor,
    the head's attention of each image: :meth:`take` returns those recorded
    since the ``with`` began or since the last call, as HeadAttention.

    ``model`` is the segmentor, also inside DDP or a test-time wrapper; each
    forward of the segmentor itself (one per view or window) is one record.
    """

    def __init__(self, model):
        self.segmentor = _find_danet_segmentor(model)
        self.head = self.segmentor.sem_seg_head
        self.stride = self.segmentor.backbone.output_shape()[self.head.in_feature].stride
        # The channels of channel attention: the width of its branch.
        self.num_channels = self.head.channel_branch[0].out_channels
        self._forget()
        self._handles = []

    def _forget(self):
        self._input_sizes, self._position_inputs, self._channel_outputs = [], [], []

    def __enter__(self):
        self._forget()  # a forward that failed in an earlier ``with`` left its records
        self._handles = [
            self.segmentor.register_forward_pre_hook(self._record_input_sizes),
            self.head.position_branch[1].register_forward_pre_hook(
                lambda module, args: self._position_inputs.append(args[0].detach())
            ),
            self.head.channel_branch[1].register_forward_hook(
                lambda module, args, output: self._channel_outputs.append(output.detach())
            ),
        ]
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _record_input_sizes(self, module, args):
        self._input_sizes.extend(tuple(inputs["image"].shape[-2:]) for inputs in args[0])

    def take(self):
        """HeadAttention of each image since the last call, in order."""
        position_inputs = [x for batch in self._position_inputs for x in batch]
        channel_outputs = [x for batch in self._channel_outputs for x in batch]
        records = [
            HeadAttention(self.head.position_branch[1], position, channel, self.stride, size)
            for size, position, channel in zip(self._input_sizes, position_inputs, channel_outputs)
        ]
        self._forget()
        return records


def _find_danet_segmentor(model):
    """The module of ``model`` whose ``sem_seg_head`` is a DANetHead (the model
    itself, or inside a wrapper); an InputError when there is none."""
    for module in model.modules():
        if isinstance(getattr(module, "sem_seg_head", None), DANetHead):
            return module
    raise InputError(
        f"{type(model).__name__} has no DANet head to draw the attention of: "
        "use a config with MODEL.SEM_SEG_HEAD.NAME 'DANetHead'"
    )


def grid_points(image_size, count):
    """The centres of a count x count grid over a (height, width) image, as (x, y) pixels."""
    height, width = image_size
    return [
        (int((j + 0.5) * width / count), int((i + 0.5) * height / count)) for i in range(count) for j in range(count)
    ]


def most_varied_channels(response, count):
    """The ``count`` channels of a [C, h, w] response that vary most over the
    image, most varied first: flat channels make blank pictures."""
    spread = response.flatten(1).float().std(dim=1)
    return spread.argsort(descending=True)[:count].tolist()


def attention_picture(image, train_ids, attention, points, names, colors, channels, panel_width=480):
    """One picture of what the head attended to in ``image``.

    First row: the prediction in the class colours, then for each point its
    position-attention weights over the image (blue none, red the point's
    largest weight) with the point marked. Second row: the attended response
    of each channel in ``channels`` (blue its lowest, red its highest value).

    Args:
        image: [H, W, 3] uint8 RGB, the image the model's input was resized from.
        train_ids: [H, W] the prediction.
        attention: its HeadAttention.
        points: image points [(x, y)].
        names, colors: class names and [K, 3] RGB colours.
        channels: channel indices.
        panel_width: panels are scaled down to at most this width.
    """
    small_image, scale = scaled_for_panels(image, panel_width)
    small_ids = cv2.resize(np.asarray(train_ids, np.uint8), small_image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    first_row = [_captioned(blend_with_legend(small_image, small_ids, names, colors), "prediction")]
    for (x, y), panel in zip(points, point_panels(attention, image.shape[:2], points, small_image, scale)):
        first_row.append(_captioned(panel, f"point ({x:g}, {y:g})"))
    second_row = [
        _captioned(panel, f"channel {channel}")
        for channel, panel in zip(channels, channel_panels(attention, channels, small_image))
    ]
    return _stack([_stack(first_row, axis=1), _stack(second_row, axis=1)], axis=0)


def scaled_for_panels(image, panel_width):
    """The [h, w, 3] image scaled down to at most ``panel_width`` wide, the
    background of the panels, and the scale."""
    height, width = image.shape[:2]
    scale = min(1.0, panel_width / width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA), scale


def point_panels(attention, image_size, points, small_image, scale):
    """For each image point (x, y) of the (height, width) image, its
    position-attention weights as a heat map over ``small_image`` (the image
    at ``scale``, from :func:`scaled_for_panels`) scaled to their maximum,
    with the point marked."""
    cells = [attention.cell(point, image_size) for point in points]
    panels = []
    for (x, y), weights in zip(points, attention.to_picture(attention.position_rows(cells), small_image.shape[:2])):
        panel = heat_map(small_image, weights / weights.max())
        mark(panel, ((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5))
        panels.append(panel)
    return panels


def channel_panels(attention, channels, small_image):
    """For each channel index, its attended response as a heat map over
    ``small_image``, from its lowest to its highest value."""
    panels = []
    for response in attention.to_picture(attention.channel_output[channels], small_image.shape[:2]):
        low, high = response.min(), response.max()
        panels.append(heat_map(small_image, (response - low) / (high - low).clamp(min=1e-12)))
    return panels


def heat_map(image, values, opacity=0.6):
    """[H, W] values in [0, 1] in the JET palette over the grey image."""
    levels = (values.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    colored = cv2.applyColorMap(levels, cv2.COLORMAP_JET)[:, :, ::-1]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    return ((1 - opacity) * grey + opacity * colored).round().astype(np.uint8)


def mark(picture, point):
    """A white cross with a black outline at (x, y), visible on any colour."""
    center = tuple(int(round(c)) for c in point)
    cv2.drawMarker(picture, center, (0, 0, 0), cv2.MARKER_CROSS, 15, 4)
    cv2.drawMarker(picture, center, (255, 255, 255), cv2.MARKER_CROSS, 13, 2)


def _captioned(picture, caption):
    """The picture under a caption, widened with white if the caption is wider."""
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    text_width = cv2.getTextSize(caption, font, font_scale, 1)[0][0] + 6
    width = max(picture.shape[1], text_width)
    canvas = np.full((CAPTION_HEIGHT + picture.shape[0], width, 3), 255, np.uint8)
    cv2.putText(canvas, caption, (3, CAPTION_HEIGHT - 6), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    canvas[CAPTION_HEIGHT:, : picture.shape[1]] = picture
    return canvas


def _stack(pictures, axis):
    """Pictures side by side (axis 1) or one below the other (axis 0), with
    white gaps, padded with white to a common height (width)."""
    other = 1 - axis
    extent = max(p.shape[other] for p in pictures)
    parts = []
    for picture in pictures:
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[other] = (0, extent - picture.shape[other])
        gap_shape = [0, 0, 3]
        gap_shape[axis], gap_shape[other] = GAP, extent
        parts += [np.pad(picture, pad, constant_values=255), np.full(gap_shape, 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=axis)
