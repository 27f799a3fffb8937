"""train_net.py, with signals the test sends from inside the run: a process
signals itself after a chosen iteration (and, with --during-save, again while
the checkpoint is being written), so a test stops training at a known point
instead of after a sleep.

    python tests/train_net_with_signals.py ITERATION RANKS SIGNAL [--during-save] -- ARGS

runs ``train_net.py ARGS``; RANKS is a comma-separated list of the processes
that send SIGNAL (a name such as SIGTERM) after iteration ITERATION.
"""
import os
import runpy
import signal
import sys

import torch

from detectron2.engine import DefaultTrainer, HookBase
from detectron2.utils import comm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "train_net.py")


class SignalAfter(HookBase):
    def __init__(self, iteration, ranks, sig):
        self.iteration, self.ranks, self.sig = iteration, ranks, sig

    def after_step(self):
        if self.trainer.iter == self.iteration and comm.get_rank() in self.ranks:
            os.kill(os.getpid(), self.sig)


def signal_while_saving(sig):
    """Have torch.save signal this process before it writes."""
    save = torch.save

    def save_after_a_signal(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return save(*args, **kwargs)

    torch.save = save_after_a_signal


def main(iteration, ranks, sig_name, *rest):
    sig = getattr(signal, sig_name)
    options, train_net_args = rest[: rest.index("--")], rest[rest.index("--") + 1 :]
    if "--during-save" in options:
        signal_while_saving(sig)
    hook = SignalAfter(int(iteration), [int(r) for r in ranks.split(",")], sig)
    build_hooks = DefaultTrainer.build_hooks
    DefaultTrainer.build_hooks = lambda trainer: build_hooks(trainer) + [hook]
    sys.argv = [TRAIN_NET, *train_net_args]
    sys.path.insert(0, REPO)
    runpy.run_path(TRAIN_NET, run_name="__main__")


if __name__ == "__main__":
    main(*sys.argv[1:])
