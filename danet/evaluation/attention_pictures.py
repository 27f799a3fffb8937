"""The attention pictures of tools/visualize_attention.py for a few evaluation
images, in TensorBoard (TEST.ATTENTION_PICTURES)."""

import contextlib
import os

import cv2
import numpy as np

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.utils import comm
from detectron2.utils.colormap import colormap
from detectron2.utils.events import EventStorage, TensorboardXWriter, get_event_storage, has_event_storage

from ..visualization import AttentionRecorder, attention_picture, grid_points, most_varied_channels

GRID = 2  # the points are the centres of a GRID x GRID grid
CHANNELS = 4


@contextlib.contextmanager
def attention_pictures_to_tensorboard(cfg, model):
    """Draw the attention pictures of the first TEST.ATTENTION_PICTURES images
    ``model`` segments in this context (with TEST.SLIDING_WINDOW, windows),
    tagged ``attention/<image file stem>``.

    On leaving, they go to the current EventStorage, which the trainer's
    TensorBoard writer saves at the iteration; without one (``--eval-only``)
    they are written to TensorBoard events in OUTPUT_DIR. Only the main
    process draws; nothing is hooked when the key is 0.
    """
    count = cfg.TEST.ATTENTION_PICTURES
    if count <= 0 or not comm.is_main_process():
        yield
        return
    recorder = AttentionRecorder(model)
    meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    names = meta.stuff_classes
    palette = colormap(rgb=True, maximum=255)
    colors = getattr(meta, "stuff_colors", None) or [palette[i % len(palette)] for i in range(len(names))]
    colors = np.array(colors, dtype=np.uint8)
    pictures = {}

    def draw(segmentor, args, outputs):
        """Forward hook of the segmentor: draw the picture of each image of the
        batch, until ``count`` are drawn."""
        for inputs, output, attention in zip(args[0], outputs, recorder.take()):
            if len(pictures) == count:
                return
            height, width = output["sem_seg"].shape[-2:]
            image = convert_image_to_rgb(inputs["image"].permute(1, 2, 0).cpu().numpy(), cfg.INPUT.FORMAT)
            image = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR)
            channels = most_varied_channels(attention.channel_output, CHANNELS)
            train_ids = output["sem_seg"].argmax(dim=0).cpu().numpy()
            stem = os.path.splitext(os.path.basename(inputs.get("file_name", str(len(pictures)))))[0]
            points = grid_points((height, width), GRID)
            picture = attention_picture(image, train_ids, attention, points, names, colors, channels)
            pictures[f"attention/{stem}"] = picture.transpose(2, 0, 1)

    hook = recorder.segmentor.register_forward_hook(draw)
    try:
        with recorder:
            yield
    finally:
        hook.remove()
    _write(pictures, cfg.OUTPUT_DIR)


def _write(pictures, output_dir):
    """Put the pictures in the running trainer's event storage; outside training
    (``--eval-only``), write them as TensorBoard events into ``output_dir``."""
    if has_event_storage():
        for tag, picture in pictures.items():
            get_event_storage().put_image(tag, picture)
        return
    writer = TensorboardXWriter(output_dir)
    with EventStorage():
        for tag, picture in pictures.items():
            get_event_storage().put_image(tag, picture)
        writer.write()
    writer.close()
