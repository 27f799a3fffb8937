#!/usr/bin/env python
"""What each memory saving buys and costs: the bytes autograd keeps for the
backward of one training forward, for this project's DANet with no saving, each
checkpointed part alone, MODEL.DANET.MEMORY_SAVING True and every part, and for
mmsegmentation's DANet (the models of bench_peers.py); and the seconds of each
part's forward in training, which is what its recompute adds to a step.

    python benchmarks/bench_saved_activations.py --depth 50 --size 256x512 --batch 2

Bytes are counted by torch.autograd.graph.saved_tensors_hooks (each storage
once, parameters excluded): exact, and unaffected by the allocator or by other
jobs on the machine. Every activation is proportional to the pixels, so the
bytes at 512x1024 are 4x those at 256x512. Peak memory adds to this the
gradients, the optimizer state and the transient tensors of the backward
(bench_peers.py measures it). Seconds are wall time, the median over --iters
training steps after one warm-up step: run them on an idle machine.
"""
import argparse
import collections
import gc
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_peers import Mmseg, Ours, parse_sizes, training_step  # noqa: E402
from benchmarks.memory import median_time, saved_activation_bytes  # noqa: E402
from danet.modeling.memory_saving import CHECKPOINT_PARTS, SWITCH_PARTS, part_module  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--size", default="256x512", type=lambda s: parse_sizes(s)[0], help="HxW")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3, help="timed training steps (median)")
    parser.add_argument("--reference-dir", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), ".reference"))  # fmt: skip
    parser.add_argument("--output", default="output/bench_saved_activations.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    images = [torch.randint(0, 256, (3, *args.size), dtype=torch.uint8) for _ in range(args.batch)]
    labels = [torch.randint(0, 19, args.size) for _ in range(args.batch)]
    choices = [("none", [])] + [(part, [part]) for part in CHECKPOINT_PARTS]
    choices += [("MEMORY_SAVING True", list(SWITCH_PARTS)), ("every part", list(CHECKPOINT_PARTS))]
    saved = {}
    for name, parts in choices:
        saved[name] = saved_gb(Ours(args.depth, False, "cpu", checkpoint=parts), images, labels)
        gc.collect()  # a checkpointed forward closes over its module: free each model before the next
    if os.path.isdir(os.path.join(args.reference_dir, "mmseg")):
        saved["mmseg"] = saved_gb(Mmseg(args.depth, args.size, "cpu", args.reference_dir), images, labels)
    step_seconds, part_seconds = forward_seconds(Ours(args.depth, False, "cpu"), images, labels, args.iters)
    part_seconds["MEMORY_SAVING True"] = sum(part_seconds[part] for part in SWITCH_PARTS)
    part_seconds["every part"] = sum(part_seconds[part] for part in CHECKPOINT_PARTS)

    h, w = args.size
    print(f"R{args.depth}, {h}x{w}, batch {args.batch}; a training step without savings: {step_seconds:.2f} s")
    print(f"{'checkpointed':>20} {'GB kept':>8} {'GB saved':>9} {'recompute s':>12} {'of a step':>10}")
    for name, gb in saved.items():
        row = f"{name:>20} {gb:8.3f}"
        if name in part_seconds:
            seconds = part_seconds[name]
            row += f" {saved['none'] - gb:9.3f} {seconds:12.3f} {seconds / step_seconds:9.1%}"
        print(row)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"settings": {**vars(args), "size": f"{h}x{w}"}, "saved_gb": saved,
                   "step_seconds": step_seconds, "recompute_seconds": part_seconds}, f, indent=2)  # fmt: skip


def saved_gb(runner, images, labels):
    inputs = runner.inputs(images, labels)
    runner.model.train()
    return saved_activation_bytes(runner.model, lambda: runner.train_loss(inputs)) / 2**30


def forward_seconds(runner, images, labels, iters):
    """The median training step without savings, and the median seconds of
    each checkpointable part's forward within it."""
    runner.model.train()
    step = training_step(runner, runner.inputs(images, labels))
    seconds = collections.defaultdict(list)

    def timed(name, function):
        def run(*args, **kwargs):
            start = time.perf_counter()
            output = function(*args, **kwargs)
            seconds[name].append(time.perf_counter() - start)
            return output

        return run

    for part in CHECKPOINT_PARTS:
        if part == "losses":
            runner.model.sem_seg_head.losses = timed(part, runner.model.sem_seg_head.losses)
        else:
            module = part_module(runner.model, part)
            module.forward = timed(part, module.forward)
    step()  # warm-up
    seconds.clear()
    step_seconds = median_time(step, 0, iters, torch.device("cpu"))
    return step_seconds, {name: sorted(values)[len(values) // 2] for name, values in seconds.items()}


if __name__ == "__main__":
    main()
