#!/usr/bin/env python
"""Segment images with a model exported by tools/export_model.py (ONNX Runtime
or TorchScript), writing the same pictures as demo.py.

    python tools/segment_exported.py --model exported/model.onnx --input frames/ --output out/
    python tools/segment_exported.py --model exported/model.onnx --window 512 1024 --stride 512 1024 ...

For each image: <stem>_pred.png (uint8 train ids) and <stem>_vis.png (the
image blended with the class colours, with a legend). Images are resized to
the exported config's test size as demo.py does, and the logits back with its
MODEL.DANET.ALIGN_CORNERS. --window bounds the memory of position attention:
the graph runs on windows of that size (clipped at the border) and
overlapping logits are averaged, as TEST.SLIDING_WINDOW does in PyTorch; an
export of a config with TEST.SLIDING_WINDOW.ENABLED uses its window by
default. There is no config to override: model.json holds what the export
recorded of it.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet import cli  # noqa: E402
from danet.errors import InputError, exit_on_input_error  # noqa: E402
from danet.export import EXPORT_FORMATS, ExportedModel, segment_image  # noqa: E402
from danet.modeling.test_time_augmentation import check_window  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, metavar="FILE", help="model.onnx or model.ts (model.json next to it)")
    parser.add_argument("--backend", choices=EXPORT_FORMATS, help="default: the format the model was exported to")
    cli.add_image_arguments(parser, output_help="folder for <stem>_pred.png and <stem>_vis.png")
    parser.add_argument("--window", type=int, nargs=2, metavar=("H", "W"), help="segment in windows of this size")
    parser.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="window stride (default: the window)")
    cli.add_prediction_arguments(parser)
    parser.add_argument("--threads", type=int, help="CPU threads (default: the runtime's)")
    return parser


def sliding_window(args, metadata):
    """(window, stride) from the options, else from the exported config, else (None, None)."""
    window, stride = args.window, args.stride
    if window is None and metadata["sliding_window"]:
        window = metadata["sliding_window"]["crop_size"]
        stride = stride or metadata["sliding_window"]["stride"]
    if window is None:
        if stride is not None:
            raise InputError("--stride needs --window")
        return None, None
    return check_window(window, stride or window, keys=("--window", "--stride"))


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)
    with exit_on_input_error("segment_exported.py"):
        paths = cli.list_inputs(args.input)
        cli.output_folder(args.output)
        model = ExportedModel(args.model, args.backend, args.threads)
        window, stride = sliding_window(args, model.metadata)
    names = model.metadata["class_names"]
    colors = np.array(model.metadata["class_colors"], dtype=np.uint8)

    def segment(path, image):
        train_ids = cli.predict_train_ids(segment_image(model, image, window, stride), args.confidence_threshold)
        cli.save_prediction(args.output, path, image, train_ids, names, colors, args.opacity)

    return cli.for_each_image(paths, segment, desc="segment")


if __name__ == "__main__":
    sys.exit(main())
