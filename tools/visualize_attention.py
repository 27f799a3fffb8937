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
reported and skipped; the exit status is 1 if any was. Config overrides are
trailing KEY VALUE pairs (after `--` when they follow --input, which takes many
values) or follow --opts.
"""

import argparse
import os
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet import cli  # noqa: E402
from danet.data.datasets import class_names_and_colors  # noqa: E402
from danet.engine import SegmentationPredictor, build_inference_model  # noqa: E402
from danet.errors import InputError, exit_on_input_error  # noqa: E402
from danet.visualization import AttentionRecorder, attention_picture, grid_points, most_varied_channels  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_config_arguments(parser)
    cli.add_image_arguments(parser, output_help="folder for <stem>_attention.png")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--points", type=parse_points, help='image points "x,y;x,y" (pixels, 0,0 top left)')
    where.add_argument("--grid", type=parse_grid, default=2, help="points at the centres of an N x N grid (default 2)")
    parser.add_argument(
        "--channels", type=parse_channels, help='channel indices "3,11" (default: the 4 that vary most)'
    )
    parser.add_argument("--panel-width", type=int, default=480, help="panels wider than this are scaled down")
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
    channels = args.channels or most_varied_channels(attention.channel_output, 4)
    train_ids = cli.predict_train_ids(logits)
    return attention_picture(image, train_ids, attention, points, names, colors, channels, args.panel_width)


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)
    with exit_on_input_error("visualize_attention.py"):
        paths = cli.list_inputs(args.input)
        cli.output_folder(args.output)
        cfg = cli.config_from_args(args)
        if cfg.MODEL.SEM_SEG_HEAD.NAME != "DANetHead":
            raise InputError(
                f"MODEL.SEM_SEG_HEAD.NAME is {cfg.MODEL.SEM_SEG_HEAD.NAME!r}: the config has no DANet head "
                "to draw the attention of (use 'DANetHead')"
            )
        names, colors = class_names_and_colors(cfg)
        model = build_inference_model(cfg)
        recorder = AttentionRecorder(model)
        # Before any image runs: the channels exist whatever the image.
        if args.channels and not all(0 <= c < recorder.num_channels for c in args.channels):
            raise InputError(
                f"--channels {','.join(map(str, args.channels))}: this model's channel attention has channels "
                f"0..{recorder.num_channels - 1}"
            )

    def save_picture(path, image):
        picture = draw(model, recorder, image, args, cfg, names, colors)
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + "_attention.png")
        Image.fromarray(picture).save(out)

    return cli.for_each_image(paths, save_picture, desc="attention")


if __name__ == "__main__":
    sys.exit(main())
