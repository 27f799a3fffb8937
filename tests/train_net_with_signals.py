"""Run train_net.py with signals sent from inside the run, so a test stops
training at a known point instead of after a sleep: the processes of RANKS
have their process group (the process and its data-loader workers) signalled
after iteration ITERATION and, with --during-save, again just before the
checkpoint is written. As from SLURM, the signals come from another process.

    python tests/train_net_with_signals.py --after-iteration 2 --ranks 0 --signal SIGTERM \\
        [--during-save] train_net.py ARGS
"""
import argparse
import os
import runpy
import signal
import sys

import torch

from detectron2.engine import DefaultTrainer, HookBase
from detectron2.utils import comm


class SignalAfter(HookBase):
    def __init__(self, iteration, ranks, sig):
        self.iteration, self.ranks, self.sig = iteration, ranks, sig

    def after_step(self):
        if self.trainer.iter == self.iteration and comm.get_rank() in self.ranks:
            signal_process_group(self.sig)


def signal_process_group(sig):
    """Send ``sig`` to this process group from a child process, and wait until it is sent."""
    group = os.getpgrp()
    child = os.fork()
    if child == 0:
        os.killpg(group, sig)
        os._exit(0)
    os.waitpid(child, 0)


def signal_while_saving(sig):
    """Have torch.save signal this process before it writes."""
    save = torch.save

    def save_after_a_signal(*args, **kwargs):
        signal_process_group(sig)
        return save(*args, **kwargs)

    torch.save = save_after_a_signal


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--after-iteration", type=int, required=True)
    parser.add_argument("--ranks", type=lambda ranks: [int(r) for r in ranks.split(",")], default=[0])
    parser.add_argument("--signal", type=lambda name: getattr(signal, name), default=signal.SIGTERM)
    parser.add_argument("--during-save", action="store_true")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    os.setpgrp()
    if args.during_save:
        signal_while_saving(args.signal)
    hook = SignalAfter(args.after_iteration, args.ranks, args.signal)
    build_hooks = DefaultTrainer.build_hooks
    DefaultTrainer.build_hooks = lambda trainer: build_hooks(trainer) + [hook]
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name="__main__")


if __name__ == "__main__":
    main()
