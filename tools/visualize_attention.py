#!/usr/bin/env python
"""Draw what DANet attends to in your images (the paper's Figure 5).

    python tools/visualize_attention.py --config-file configs/r50.yaml --input frames/ "more/*.jpg" \\
        --output attention/ --points "600,500;1500,300" --opts MODEL.WEIGHTS output/r50/model_final.pth

For each image it writes ``<stem>_attention.png``: the prediction in the
dataset's colours, then for each point (image pixels x,y; by default a 2 x 2
grid) its position-attention weights over the whole image as a heat map with
the point marked; below, the attended response of a few channels (the output
of channel attention) with their index. The model sees the image at the test
loader's size (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST), once, without TEST.AUG or
TEST.SLIDING_WINDOW. Unreadable images and points outside an image are
reported and skipped; the exit status is 1 if any was.
"""

import argparse
import os
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet.engine import SegmentationPredictor, build_inference_model  # noqa: E402
from danet.errors import InputError, exit_on_input_error  # noqa: E402
from danet.visualization import AttentionRecorder, attention_picture, grid_points, most_varied_channels  # noqa: E402
from demo import class_names_and_colors, for_each_image, list_inputs, predict_train_ids, setup_cfg  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--input", required=True, nargs="+", help="image files, folders (their images) or glob patterns"
    )
    parser.add_argument("--output", required=True, help="folder for <stem>_attention.png")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--points", type=parse_points, help='image points "x,y;x,y" (pixels, 0,0 top left)')
    where.add_argument("--grid", type=parse_grid, default=2, help="points at the centres of an N x N grid (default 2)")
    parser.add_argument(
        "--channels", type=parse_channels, help='channel indices "3,11" (default: the 4 that vary most)'
    )
    parser.add_argument("--panel-width", type=int, default=480, help="panels wider than this are scaled down")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs")
    return parser


def parse_points(text):
    try:
        points = [tuple(float(v) for v in point.split(",")) for point in text.split(";") if point.strip()]
    except ValueError:
        points = []
    if not points or any(len(point) != 2 for point in points):
        raise argparse.ArgumentTypeError(f'expected "x,y;x,y", got {text!r}')
    return points


def parse_grid(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def parse_channels(text):
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected channel indices "3,11", got {text!r}') from None


def segment_with_attention(model, recorder, image, cfg):
    """Run ``model`` once on an RGB image resized as the test loader does: the
    logits [K, H, W] at the image's size and the head's HeadAttention."""
    with recorder:
        logits = SegmentationPredictor(cfg, model)(image)
    (attention,) = recorder.take()
    return logits, attention


def draw(model, recorder, image, args, cfg, names, colors):
    """The attention picture of one RGB image."""
    logits, attention = segment_with_attention(model, recorder, image, cfg)
    points = args.points or grid_points(image.shape[:2], args.grid)
    num_channels = attention.channel_output.shape[0]
    channels = args.channels or most_varied_channels(attention.channel_output, 4)
    if not all(0 <= c < num_channels for c in channels):
        raise InputError(f"--channels {channels}: channel attention has channels 0..{num_channels - 1}")
    train_ids = predict_train_ids(logits)
    return attention_picture(image, train_ids, attention, points, names, colors, channels, args.panel_width)


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        paths = list_inputs(args.input)
    except ValueError as e:
        parser.error(str(e))
    with exit_on_input_error("visualize_attention.py"):
        cfg = setup_cfg(args)
        if cfg.MODEL.SEM_SEG_HEAD.NAME != "DANetHead":
            raise InputError(
                f"MODEL.SEM_SEG_HEAD.NAME is {cfg.MODEL.SEM_SEG_HEAD.NAME!r}: the config has no DANet head "
                "to draw the attention of (use 'DANetHead')"
            )
        names, colors = class_names_and_colors(cfg)
        model = build_inference_model(cfg)
        recorder = AttentionRecorder(model)
    os.makedirs(args.output, exist_ok=True)

    def save_picture(path, image):
        picture = draw(model, recorder, image, args, cfg, names, colors)
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + "_attention.png")
        Image.fromarray(picture).save(out)

    failed = for_each_image(paths, save_picture, desc="attention")
    if failed:
        print(f"{len(failed)} of {len(paths)} inputs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
