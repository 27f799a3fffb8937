#!/usr/bin/env python
"""Training seconds per iteration, inference seconds per image and peak memory
of a DANet model, naive against memory-efficient position attention.

    python benchmarks/bench_model.py                                  # r50, 256x256, batch 1
    python benchmarks/bench_model.py --size 768 --batch 2 --iters 10  # the original's crops, on a GPU

The model is built from the config with random weights (MODEL.WEIGHTS "", no
download) and BN in place of SyncBN (one process). Each attention impl runs in
a fresh subprocess; peak memory is its peak RSS minus the RSS after building
the model and the inputs (CPU), or torch.cuda.max_memory_allocated (CUDA).
Trailing arguments are config overrides (KEY VALUE ...).
"""
import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.memory import check_device, median_time, memory_baseline, peak_bytes_above  # noqa: E402


def build_model(args, impl):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model as build

    from danet import add_danet_config

    cfg = get_cfg()
    add_danet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.merge_from_list([
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device,
        "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN",
        "MODEL.DANET.ATTENTION_IMPL", impl,
    ])  # fmt: skip
    return build(cfg)


def measure(args, impl):
    """Run in a fresh process: train and inference timings, peak memory."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args, impl)
    inputs = [
        {
            "image": torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8),
            "sem_seg": torch.randint(0, 19, (args.size, args.size)),
        }
        for _ in range(args.batch)
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    base = memory_baseline(device)

    def train_step():
        losses = model(inputs)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    def inference_step():
        with torch.no_grad():
            model(inputs)

    model.train()
    train_s = median_time(train_step, args.warmup, args.iters, device)
    model.eval()
    inference_s = median_time(inference_step, args.warmup, args.iters, device) / args.batch
    peak = peak_bytes_above(base, device)
    return {"train_s_per_iter": train_s, "inference_s_per_image": inference_s, "peak_mb": peak / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config-file", default="configs/r50.yaml")
    parser.add_argument("--size", type=int, default=256, help="square input side in pixels")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--impls", default="naive,auto")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default="output/bench_model.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args()
    check_device(parser, args.device)
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return

    print(f"{args.config_file}, {args.size}x{args.size}, batch {args.batch}, {args.device}")
    print(f"{'impl':>8} {'train s/iter':>12} {'infer s/img':>11} {'peak MB':>9}")
    results = {}
    for impl in args.impls.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", impl] + sys.argv[1:]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{impl:>8} {result['train_s_per_iter']:12.3f} {result['inference_s_per_image']:11.3f} {result['peak_mb']:9.1f}")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "child"}, "results": results}, f, indent=2)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
