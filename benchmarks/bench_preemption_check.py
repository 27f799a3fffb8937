#!/usr/bin/env python
"""Time per check of PreemptionHook's stop agreement (an all-reduce of a flag),
the cost PREEMPTION.CHECK_PERIOD 1 adds to every training iteration.

    python -m torch.distributed.run --nproc_per_node 2 benchmarks/bench_preemption_check.py

Uses the process group torchrun sets up (gloo on the CPU, NCCL with GPUs:
the hook then sends the flag through a gloo group of its own).
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from danet.engine import PreemptionHook  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=2000)
    args = parser.parse_args()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    hook = PreemptionHook(checkpointer=None, signals=())
    hook.before_train()
    for _ in range(100):  # warm-up
        hook._signalled_anywhere()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.checks):
        hook._signalled_anywhere()
    seconds = (time.perf_counter() - start) / args.checks
    if dist.get_rank() == 0:
        print(f"{dist.get_world_size()} processes, {dist.get_backend()}: {seconds * 1e6:.0f} us per check "
              f"(mean of {args.checks})")  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
