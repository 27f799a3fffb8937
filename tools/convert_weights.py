#!/usr/bin/env python
"""Convert a published checkpoint to this project's names, for offline machines and reuse.

    python tools/convert_weights.py DANet101.pth.tar danet101_official.pth
    python tools/convert_weights.py https://download.pytorch.org/models/resnet50-0676ba61.pth r50.pth --from torchvision

SRC is a file or URL (downloaded into detectron2's cache). DST gets
``{"model": state_dict}``, which detectron2's own DetectionCheckpointer loads
into the model built from the matching config (``MODEL.WEIGHTS DST``). The
layout is detected from the keys unless ``--from`` names it. Every key of SRC
is renamed or, for the few a layout leaves out on purpose (an ImageNet
classifier), reported as dropped.
"""
import argparse
import os
import sys
from collections import Counter

import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet.checkpoint import LAYOUTS, local_checkpoint, read_checkpoint, to_project_names  # noqa: E402
from danet.checkpoint.layouts import unwrap_state_dict  # noqa: E402
from danet.errors import InputError, MissingInputError, exit_on_input_error  # noqa: E402


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", metavar="SRC", help="published checkpoint: a file or URL")
    parser.add_argument("dst", metavar="DST", help="where to write the detectron2 checkpoint")
    parser.add_argument(
        "--from",
        dest="layout",
        choices=sorted(LAYOUTS),
        help="the layout of SRC (detected from its keys when omitted): "
        + "; ".join(f"{name}: {layout.description}" for name, layout in sorted(LAYOUTS.items())),
    )
    return parser


def convert(src, dst, layout=None):
    """Write SRC's weights in this project's names to DST; returns the lines of the report."""
    if "://" not in src and not os.path.isfile(src):
        raise MissingInputError(f"SRC {src!r} does not exist: give a checkpoint file or URL")
    if os.path.isdir(dst):
        raise InputError(f"DST {dst!r} is a folder: give the file to write, such as {os.path.join(dst, 'model.pth')}")
    original = unwrap_state_dict(read_checkpoint(local_checkpoint(src, source="SRC")))
    state_dict, layout = to_project_names(original, src, layout)
    parts = Counter(".".join(key.split(".")[:2]) for key in state_dict)
    dst_dir = os.path.dirname(os.path.abspath(dst))
    os.makedirs(dst_dir, exist_ok=True)
    # "layout" keeps the provenance for SafeCheckpointer's messages; detectron2 ignores it.
    torch.save({"model": state_dict, **({"layout": layout} if layout else {})}, dst)
    report = [f"{src}: {layout or 'this project'}'s layout"]
    report += [f"  {part}: {count} tensors" for part, count in sorted(parts.items())]
    dropped = len(original) - len(state_dict)
    if dropped:
        report.append(f"  left out: {dropped} tensors ({LAYOUTS[layout].description})")
    if layout and not LAYOUTS[layout].whole_model:
        report.append("  a backbone to train from: evaluation and prediction need a trained model")
    report.append(f"Wrote {dst}: {len(state_dict)} tensors")
    return report


def main(argv=None):
    args = get_parser().parse_args(argv)
    with exit_on_input_error("convert_weights.py"):
        print("\n".join(convert(args.src, args.dst, args.layout)))


if __name__ == "__main__":
    main()
