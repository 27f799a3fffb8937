#!/usr/bin/env python
"""Segment images with a model exported by tools/export_model.py (ONNX Runtime
or TorchScript), writing the same pictures as demo.py.

    python tools/segment_exported.py --model exported/model.onnx --input frames/ --output out/
    python tools/segment_exported.py --model exported/model.onnx --window 512 1024 --stride 512 1024 ...

For each image: <stem>_pred.png (uint8 train ids) and <stem>_vis.png (the
image blended with the class colours, with a legend). Images are resized to
the exported config's test size as demo.py does. --window bounds the memory
of position attention: the graph runs on windows of that size (clipped at the
border) and overlapping logits are averaged, as TEST.SLIDING_WINDOW does in
PyTorch; an export of a config with TEST.SLIDING_WINDOW.ENABLED uses its window
by default.
"""
import argparse
import os
import sys

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from detectron2.utils.colormap import colormap  # noqa: E402

from danet.errors import exit_on_input_error  # noqa: E402
from danet.export import EXPORT_FORMATS, ExportedModel, segment_image  # noqa: E402
from demo import for_each_image, list_inputs, predict_train_ids, save_prediction  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, metavar="FILE", help="model.onnx or model.ts (model.json next to it)")
    parser.add_argument("--backend", choices=EXPORT_FORMATS, help="default: the format the model was exported to")
    parser.add_argument("--input", required=True, nargs="+", help="image files, folders (their images) or glob patterns")
    parser.add_argument("--output", required=True, help="folder for <stem>_pred.png and <stem>_vis.png")
    parser.add_argument("--window", type=int, nargs=2, metavar=("H", "W"), help="segment in windows of this size")
    parser.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="window stride (default: the window)")
    parser.add_argument("--confidence-threshold", type=float, default=0.0)
    parser.add_argument("--opacity", type=float, default=0.5)
    parser.add_argument("--threads", type=int, help="CPU threads (default: the runtime's)")
    return parser


def sliding_window(args, metadata, parser):
    """(window, stride) from the options, else from the exported config, else (None, None)."""
    window, stride = args.window, args.stride
    if window is None and metadata["sliding_window"]:
        window = metadata["sliding_window"]["crop_size"]
        stride = stride or metadata["sliding_window"]["stride"]
    if window is None:
        if stride is not None:
            parser.error("--stride needs --window")
        return None, None
    stride = stride or window
    if min(window) <= 0 or min(stride) <= 0 or any(s > w for s, w in zip(stride, window)):
        parser.error(f"--window {window} and --stride {stride} must be positive, the stride not above the window")
    return tuple(window), tuple(stride)


def class_names_and_colors(metadata):
    """The exported class names and colours; ids and detectron2's palette when absent."""
    num_classes = metadata["num_classes"]
    names = metadata["class_names"] or [f"class {i}" for i in range(num_classes)]
    palette = colormap(rgb=True, maximum=255)
    colors = metadata["class_colors"] or [palette[i % len(palette)] for i in range(num_classes)]
    return names, np.array(colors, dtype=np.uint8)


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        paths = list_inputs(args.input)
    except ValueError as e:
        parser.error(str(e))
    with exit_on_input_error("segment_exported.py"):
        model = ExportedModel(args.model, args.backend, args.threads)
    window, stride = sliding_window(args, model.metadata, parser)
    names, colors = class_names_and_colors(model.metadata)
    os.makedirs(args.output, exist_ok=True)
    def segment(path, image):
        train_ids = predict_train_ids(segment_image(model, image, window, stride), args.confidence_threshold)
        save_prediction(args.output, path, image, train_ids, names, colors, args.opacity)

    failed = for_each_image(paths, segment, desc="segment")
    if failed:
        tqdm.write(f"{len(failed)} of {len(paths)} inputs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
