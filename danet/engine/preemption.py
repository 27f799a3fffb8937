"""Preemption-safe training: on a cluster's stop signal every process stops at
the same iteration, the main one saves a checkpoint there, and the job exits
with a status a requeue script can test; the requeued job resumes on its own."""
import functools
import logging
import os
import signal
import threading

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..errors import InputError

logger = logging.getLogger(__name__)

# EX_TEMPFAIL of sysexits.h, "temporary failure, the user is invited to retry":
# no Python error (1), shell (126, 127) or death by a signal (128 + N) gives it.
PREEMPTED_EXIT_STATUS = 75
# A checkpoint saved on a signal is model_<iteration>_preempted.pth.
PREEMPTED_SUFFIX = "_preempted"


class PreemptionHook(HookBase):
    """Stop training after the iteration in which one of ``signals`` reached any process.

    The signal handler only records the signal, so neither the running iteration
    nor a checkpoint being written is interrupted, and a second signal changes
    nothing. Every ``check_period`` iterations the processes all-reduce a
    "signalled" flag, so all of them stop after the same iteration; the main
    process saves ``model_<iteration>_preempted.pth`` with the trainer's state
    (optimizer, LR scheduler, iteration) and the others wait for it. Then the
    hook raises ``SystemExit(PREEMPTED_EXIT_STATUS)``: detectron2's training
    loop runs every hook's ``after_train`` (its writers flush metrics.json and
    the TensorBoard events) and the process exits with that status.

    Register it last, after the checkpoint, evaluation and writer hooks, so the
    stop comes after all of the iteration's work.
    """

    def __init__(self, checkpointer, signals, check_period=1):
        self.checkpointer = checkpointer
        self.signals = tuple(signals)
        self.check_period = check_period
        self.received = None
        self._stopping = False
        self._default_handlers = {}
        self._flag_group = None

    def before_train(self):
        for sig in self.signals:
            self._default_handlers[sig] = signal.signal(sig, self._record)
        if comm.get_world_size() > 1 and dist.get_backend() != "gloo":
            # The flag travels on the CPU, without waiting for the GPU's queue.
            self._flag_group = dist.new_group(backend="gloo")

    def _record(self, signum, frame):
        """Signal handler: remember the first stop signal; the stop comes after the iteration."""
        if self.received is None:
            self.received = signal.Signals(signum)

    def after_step(self):
        """Every ``check_period`` iterations: when any process received a stop signal,
        save ``model_<iter>_preempted.pth`` and exit with PREEMPTED_EXIT_STATUS, all
        processes after the same iteration (the last iteration ends normally)."""
        iteration = self.trainer.iter
        if (iteration + 1) % self.check_period or not self._signalled_anywhere():
            return
        reason = f"{self.received.name} received" if self.received else "another process received a stop signal"
        if iteration + 1 >= self.trainer.max_iter:
            logger.warning(f"{reason} during the last iteration: training ends normally.")
            return
        name = f"model_{iteration:07d}{PREEMPTED_SUFFIX}"
        saving = f"saving {name}.pth" if comm.is_main_process() else f"the main process saves {name}.pth"
        logger.warning(
            f"{reason}: stopping after iteration {iteration}, {saving} and exiting with "
            f"status {PREEMPTED_EXIT_STATUS}; the same command resumes from it."
        )
        self._stopping = True
        self.checkpointer.save(name, iteration=iteration)
        comm.synchronize()  # no process leaves before the checkpoint is complete
        raise SystemExit(PREEMPTED_EXIT_STATUS)

    def after_train(self):
        # After a stop, the handlers stay: a late signal cannot cut the exit short.
        if not self._stopping:
            for sig, handler in self._default_handlers.items():
                signal.signal(sig, handler)

    def _signalled_anywhere(self):
        """Whether any process received a stop signal: one all-reduce (MAX) of a flag."""
        flag = torch.tensor([self.received is not None], dtype=torch.int32)
        if comm.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._flag_group)
        return bool(flag.item())


def build_preemption_hook(cfg, checkpointer):
    """The PreemptionHook of cfg.PREEMPTION, or None when SIGNALS is empty."""
    if not cfg.PREEMPTION.SIGNALS:
        return None
    if cfg.PREEMPTION.CHECK_PERIOD < 1:
        raise InputError(f"PREEMPTION.CHECK_PERIOD is {cfg.PREEMPTION.CHECK_PERIOD}: give a number of iterations >= 1")
    return PreemptionHook(checkpointer, stop_signals(cfg), cfg.PREEMPTION.CHECK_PERIOD)


def stop_signals(cfg):
    """The signals of cfg.PREEMPTION.SIGNALS."""
    signals = []
    for name in cfg.PREEMPTION.SIGNALS:
        sig = getattr(signal, name, None)
        if not isinstance(sig, signal.Signals) or sig in (signal.SIGKILL, signal.SIGSTOP):
            raise InputError(
                f"PREEMPTION.SIGNALS: {name!r} is not a signal a process can catch: give names such as SIGTERM, SIGUSR1"
            )
        signals.append(sig)
    return signals


def shield_data_workers(data_loader, cfg):
    """Have the worker processes of ``data_loader`` (a torch DataLoader, or
    detectron2's AspectRatioGroupedDataset around one) survive the stop signals
    that other processes send; returns ``data_loader``.

    SLURM signals every process of a job, data-loader workers included, and a
    PyTorch worker dies of a SIGTERM its parent did not send, which would fail
    the iteration the stop has to finish. A shielded worker takes the signals
    in a thread of its own and, like PyTorch's handler, leaves only when its
    parent sends them (the DataLoader ending its workers).
    """
    loader = data_loader if isinstance(data_loader, DataLoader) else getattr(data_loader, "dataset", None)
    if isinstance(loader, DataLoader) and loader.num_workers > 0 and cfg.PREEMPTION.SIGNALS:
        loader.worker_init_fn = functools.partial(_shield_worker, stop_signals(cfg), loader.worker_init_fn)
    return data_loader


def _shield_worker(signals, worker_init_fn, worker_id):
    """worker_init_fn of a shielded worker: block the stop signals in all its threads,
    wait for them in a thread of its own, then run the loader's own worker_init_fn."""
    # Blocked here, the signals stay blocked in every thread the worker starts later.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    threading.Thread(target=_exit_on_signal_from_parent, args=(signals, os.getppid()), daemon=True).start()
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


def _exit_on_signal_from_parent(signals, parent):
    """Wait for the stop signals and exit on the first one ``parent`` sends
    (the DataLoader ending its workers); ignore the others."""
    while signal.sigwaitinfo(signals).si_pid != parent:
        pass
    os._exit(0)


def resume_requested(cfg, resume):
    """Whether training continues from OUTPUT_DIR's last checkpoint: with
    ``--resume`` (``resume``), or with PREEMPTION.AUTO_RESUME when that checkpoint
    was saved on a signal or SLURM / torchrun restarted the job. Logs which, and
    warns when a run without --resume is about to overwrite checkpoints."""
    last = _last_checkpoint(cfg.OUTPUT_DIR)
    if resume or last is None:
        return resume
    restarts = {name: os.environ.get(name, "0") for name in ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")}
    restarts = {name: count for name, count in restarts.items() if count not in ("", "0")}
    if cfg.PREEMPTION.AUTO_RESUME and (last.endswith(f"{PREEMPTED_SUFFIX}.pth") or restarts):
        why = (
            "it was saved when a run was stopped by a signal" if last.endswith(f"{PREEMPTED_SUFFIX}.pth")
            else "the job was restarted (" + ", ".join(f"{k}={v}" for k, v in restarts.items()) + ")"
        )
        logger.warning(
            f"Resuming from {os.path.join(cfg.OUTPUT_DIR, last)} as with --resume: {why}. To start "
            "afresh, use another OUTPUT_DIR or PREEMPTION.AUTO_RESUME False."
        )
        return True
    logger.warning(
        f"OUTPUT_DIR {cfg.OUTPUT_DIR} holds the checkpoint {last} but --resume was not given: training "
        "starts from iteration 0 and overwrites its checkpoints. Add --resume to continue it."
    )
    return False


def _last_checkpoint(output_dir):
    """The file named by OUTPUT_DIR/last_checkpoint, if that exists."""
    try:
        with open(os.path.join(output_dir, "last_checkpoint")) as f:
            name = f.read().strip()
    except FileNotFoundError:
        return None
    return name if os.path.isfile(os.path.join(output_dir, name)) else None
