#!/usr/bin/env python
"""Export a DANet config and weights to ONNX or TorchScript for deployment.

    python tools/export_model.py --config-file configs/r50.yaml --format onnx --output exported/ \\
        MODEL.WEIGHTS output/r50/model_final.pth

Writes DIR/model.onnx (or DIR/model.ts) and DIR/model.json. The graph takes an
image batch [B, 3, H, W] in RGB order, uint8 (or float32 0..255 with
--input-dtype float32), normalises it inside and returns float32 logits
[B, K, H, W]; batch size, height and width are dynamic. Run it with
tools/segment_exported.py. --size only sets the example image the graph is
traced with. The model is built as for evaluation: MODEL.WEIGHTS must hold
every weight of the config's model (a backbone-only file is refused), unless
--random-weights. Config overrides are trailing KEY VALUE pairs or follow --opts.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet import cli  # noqa: E402
from danet.errors import exit_on_input_error  # noqa: E402
from danet.export import EXPORT_FORMATS, check_exportable, export_model  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="export randomly initialised weights and ignore MODEL.WEIGHTS: for tests and benchmarks only, "
        "the predictions are meaningless",
    )
    cli.add_config_arguments(parser)
    return parser


def main(argv=None):
    args = cli.parse_args(get_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with exit_on_input_error("export_model.py"):
        cfg = cli.config_from_args(args)
        check_exportable(cfg, args.format, tuple(args.size), args.attention_impl, args.input_dtype)
        cli.output_folder(args.output)
        path = export_model(
            cfg,
            args.format,
            args.output,
            size=tuple(args.size),
            attention_impl=args.attention_impl,
            input_dtype=args.input_dtype,
            random_weights=args.random_weights,
        )
    print(f"Wrote {path} and {os.path.join(os.path.dirname(path), 'model.json')}")
    if args.random_weights:
        print("The weights are random (--random-weights): its predictions are meaningless.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
