#!/usr/bin/env python
"""Print the parameter count and FLOPs of a DANet config at an input size.

    python tools/analyze_model.py --config-file configs/r50.yaml --size 1024 2048 MODEL.DEVICE cpu
    python tools/analyze_model.py --config-file configs/r50.yaml --size 1024 2048 --opts MODEL.DEVICE cpu

FLOPs are fvcore's, counted on one traced forward pass in inference mode: one
multiply-add counts as one FLOP (so they are MACs), for convolutions, matrix
products (aten::bmm, aten::matmul, and aten::scaled_dot_product_attention and the
chunked attention Function as their two products) and bilinear upsampling. Batch norm (fused at inference),
softmax, activations and other elementwise ops are not counted, following
detectron2.utils.analysis; ops that are neither counted nor ignored are
listed. The model runs once at the given size, so a full-size Cityscapes frame
needs several GB of memory (position attention over 128 x 256 positions).
"""
import argparse
import os
import sys
from math import prod

import torch
from fvcore.nn import parameter_count
from fvcore.nn.jit_handles import get_shape
from tabulate import tabulate

from detectron2.utils.analysis import FlopCountAnalysis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet import cli  # noqa: E402
from danet.engine import build_inference_model  # noqa: E402
from danet.errors import exit_on_input_error  # noqa: E402

# Rows of the report: (label, module name prefix in the SemanticSegmentor).
MODULES = (
    ("backbone", "backbone"),
    ("DANet head", "sem_seg_head"),
    ("head: position attention", "sem_seg_head.position_branch.1"),
    ("head: channel attention", "sem_seg_head.channel_branch.1"),
)
# Free in inference: padding copies memory and Dropout2d is the identity;
# channel attention's in-place negation is elementwise, like softmax.
IGNORED_OPS = ("aten::pad", "aten::feature_dropout", "aten::neg_")


def attention_flop_jit(inputs, outputs):
    """An attention op on (Q, K, V) as its two products, Q K^T and A V: fvcore
    has no handle for aten::scaled_dot_product_attention, nor for the chunked
    route's autograd Function, and would count nothing."""
    query, key, value = (get_shape(v) for v in inputs[:3])
    *batch, length, channels = query
    return prod(batch) * length * key[-2] * (channels + value[-1])


def flop_count_analysis(model, height, width):
    """fvcore's analysis of ``model`` on one height x width image."""
    inputs = [{"image": torch.zeros(3, height, width, device=model.device)}]
    flops = FlopCountAnalysis(model, inputs)
    flops.set_op_handle("aten::scaled_dot_product_attention", attention_flop_jit)
    flops.set_op_handle("prim::PythonOp.ChunkedAttention", attention_flop_jit)
    flops.set_op_handle(**{op: None for op in IGNORED_OPS})
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return flops


def report(model, height, width):
    """The text table of parameters and GFLOPs, whole model and by part."""
    params = parameter_count(model)
    flops = flop_count_analysis(model, height, width)
    # detectron2's FlopCountAnalysis traces the model inside a wrapper, as "model".
    by_module = flops.by_module()
    rows = [["total", params[""] / 1e6, flops.total() / 1e9]]
    rows += [
        [label, params[name] / 1e6, by_module["model." + name] / 1e9]
        for label, name in MODULES
        if name in params
    ]
    table = tabulate(rows, headers=["", "params (M)", "GFLOPs"], tablefmt="pipe", floatfmt=".3f")
    lines = [f"Input {height} x {width}:", table]
    unsupported = flops.unsupported_ops()
    if unsupported:
        lines.append("Not counted: " + ", ".join(f"{op} (x{n})" for op, n in sorted(unsupported.items())))
    return "\n".join(lines)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), metavar=("HEIGHT", "WIDTH"))
    cli.add_config_arguments(parser)
    return parser


def main(argv=None):
    parser = get_parser()
    args = cli.parse_args(parser, argv)
    if min(args.size) <= 0:
        parser.error(f"--size must be two positive ints (height width), got {args.size}")
    with exit_on_input_error("analyze_model.py"):
        cfg = cli.config_from_args(args)
        # Weights do not change the counts; random init avoids a download.
        model = build_inference_model(cfg, random_init=True)
    with torch.no_grad():
        print(report(model, *args.size))


if __name__ == "__main__":
    main()
