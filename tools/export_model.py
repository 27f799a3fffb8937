#!/usr/bin/env python
"""Export a DANet config and weights to ONNX or TorchScript for deployment.

    python tools/export_model.py --config-file configs/r50.yaml --format onnx --output exported/ \\
        --opts MODEL.WEIGHTS output/r50/model_final.pth

Writes DIR/model.onnx (or DIR/model.ts) and DIR/model.json. The graph takes an
image batch [B, 3, H, W] in RGB order, uint8 (or float32 0..255 with
--input-dtype float32), normalises it inside and returns float32 logits
[B, K, H, W]; batch size, height and width are dynamic. Run it with
tools/segment_exported.py. --size only sets the example image the graph is
traced with.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet.config import load_config  # noqa: E402
from danet.errors import exit_on_input_error  # noqa: E402
from danet.export import EXPORT_FORMATS, check_exportable, export_model  # noqa: E402
from demo import class_names_and_colors  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", required=True, help=f"one of {', '.join(EXPORT_FORMATS)}")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for model.onnx / model.ts and model.json")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"), help="example image to trace with"
    )
    parser.add_argument(
        "--attention-impl",
        help="position attention route: naive or sdpa (default: naive for onnx, sdpa for torchscript)",
    )
    parser.add_argument("--input-dtype", default="uint8", help="uint8 or float32 (values 0..255)")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_input_error("export_model.py"):
        cfg = load_config(args.config_file, args.opts)
        check_exportable(cfg, args.format, tuple(args.size), args.attention_impl, args.input_dtype)
        names, colors = class_names_and_colors(cfg)
        path = export_model(
            cfg,
            args.format,
            args.output,
            size=tuple(args.size),
            attention_impl=args.attention_impl,
            input_dtype=args.input_dtype,
            class_names=names,
            class_colors=colors,
        )
    print(f"Wrote {path} and {os.path.join(os.path.dirname(path), 'model.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
