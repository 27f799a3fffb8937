#!/usr/bin/env python
"""What each memory saving buys: the bytes autograd keeps for the backward of
one training forward, for this project's DANet with no saving, each checkpointed
part alone and every saving (MODEL.DANET.MEMORY_SAVING True), and for
mmsegmentation's DANet (the models of bench_peers.py).

    python benchmarks/bench_saved_activations.py --depth 50 --size 256x512 --batch 2

Counted by torch.autograd.graph.saved_tensors_hooks (each storage once,
parameters excluded): exact, and unaffected by the allocator or by other jobs
on the machine. Every activation is proportional to the pixels, so the bytes at
512x1024 are 4x those at 256x512. Peak memory adds to this the gradients, the
optimizer state and the transient tensors of the backward (bench_peers.py
measures it).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_peers import Mmseg, Ours, parse_sizes  # noqa: E402
from benchmarks.memory import saved_activation_bytes  # noqa: E402
from danet.modeling.memory_saving import CHECKPOINT_PARTS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", default="256x512", type=lambda s: parse_sizes(s)[0], help="HxW")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reference-dir", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), ".reference"))  # fmt: skip
    parser.add_argument("--output", default="output/bench_saved_activations.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    images = [torch.randint(0, 256, (3, *args.size), dtype=torch.uint8) for _ in range(args.batch)]
    labels = [torch.randint(0, 19, args.size) for _ in range(args.batch)]
    choices = [("none", [])] + [(part, [part]) for part in CHECKPOINT_PARTS] + [("MEMORY_SAVING True", None)]
    results = {}
    for name, parts in choices:
        runner = Ours(args.depth, parts is None, "cpu", checkpoint=parts or [])
        results[f"ours, checkpoint {name}"] = measure(runner, images, labels)
    if os.path.isdir(os.path.join(args.reference_dir, "mmseg")):
        results["mmseg"] = measure(Mmseg(args.depth, args.size, "cpu", args.reference_dir), images, labels)
    h, w = args.size
    print(f"R{args.depth}, {h}x{w}, batch {args.batch}: GB kept for the backward")
    for name, gb in results.items():
        print(f"{name:>40} {gb:8.3f}")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"settings": {**vars(args), "size": f"{h}x{w}"}, "saved_gb": results}, f, indent=2)


def measure(runner, images, labels):
    inputs = runner.inputs(images, labels)
    runner.model.train()
    return saved_activation_bytes(runner.model, lambda: runner.train_loss(inputs)) / 2**30


if __name__ == "__main__":
    main()
