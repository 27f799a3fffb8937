"""Preemption (a signal stops training at an iteration every process agrees on,
with a checkpoint there and exit status 75; the same command resumes) and the
launchers: torchrun, srun's variables set by hand, GPU layouts simulated.
tests/test_slurm.py runs the job scripts on a real SLURM."""
import logging
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from detectron2.engine import defaults as d2_defaults
from detectron2.utils import comm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import TINY_DEMO, cpu_cfg, free_port, inherited_environment, last_metrics, scheduled_lr, train_net
from danet.engine import (
    PREEMPTED_EXIT_STATUS,
    build_preemption_hook,
    cluster_environment,
    create_ddp_model,
    launch,
    resume_requested,
)
from danet.engine.launch import ClusterEnvironment, cuda_device, first_host
from danet.errors import InputError

# The module, which danet.engine.launch (the function) shadows as an attribute.
launch_module = sys.modules[cuda_device.__module__]
SIGNALLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net_with_signals.py")
SYNC_BN = ["MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN"]


def signalled(after_iteration, ranks, signal, *options):
    """A launcher of train_net.py whose processes ``ranks`` signal themselves after ``after_iteration``."""
    return (sys.executable, SIGNALLED, "--after-iteration", str(after_iteration), "--ranks", ranks, "--signal", signal,
            *options)  # fmt: skip


def srun(datasets, output_dir, *opts, flags=(), launcher=(sys.executable,), tasks=2):
    """Start train_net.py as ``srun --ntasks <tasks>`` does on one node (one process per
    task, with SLURM's variables); the tasks' exit statuses."""
    slurm = {"SLURM_NTASKS": str(tasks), "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost",
             "MASTER_PORT": str(free_port())}  # fmt: skip
    runs = [
        train_net(datasets, output_dir, *opts, flags=flags, launcher=launcher, background=True,
                  env={**slurm, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task)})
        for task in range(tasks)
    ]  # fmt: skip
    try:
        return [run.wait(timeout=600) for run in runs]
    finally:
        for run in runs:
            run.kill()


def tensorboard_steps(output_dir, tag="total_loss"):
    (events,) = output_dir.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def test_signal_saves_the_iteration_and_the_same_command_resumes(toy_cityscapes, tmp_path):
    opts = ["SOLVER.MAX_ITER", "5", "DATALOADER.NUM_WORKERS", "1"]
    # SIGTERM to the process and its data-loader worker after iteration 2, and again while the checkpoint is written.
    stopped = train_net(toy_cityscapes["datasets"], tmp_path, *opts,
                        launcher=signalled(2, "0", "SIGTERM", "--during-save"))  # fmt: skip
    assert stopped.returncode == PREEMPTED_EXIT_STATUS, stopped.stderr[-3000:]
    assert "SIGTERM received: stopping after iteration 2, saving model_0000002_preempted.pth" in stopped.stdout
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002_preempted.pth"
    checkpoint = torch.load(tmp_path / "model_0000002_preempted.pth", weights_only=True)
    assert checkpoint["iteration"] == checkpoint["trainer"]["iteration"] == 2
    assert "LRScheduler" in checkpoint["trainer"]["hooks"]
    assert not list(tmp_path.glob("*.tmp"))
    assert last_metrics(tmp_path)["iteration"] == 2
    assert tensorboard_steps(tmp_path) == [2]

    # The same command, without --resume, continues from the checkpoint.
    resumed = train_net(toy_cityscapes["datasets"], tmp_path, *opts)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "model_0000002_preempted.pth as with --resume: it was saved when a run was stopped" in resumed.stdout
    assert "Starting training from iteration 3" in resumed.stdout
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    metrics = last_metrics(tmp_path)
    assert metrics["iteration"] == 4
    assert metrics["lr"] == pytest.approx(scheduled_lr(cpu_cfg("demo.yaml", *TINY_DEMO, *opts), 4), rel=1e-6)


def test_two_processes_stop_together_then_torchrun_resumes_and_evaluates_like_one(toy_cityscapes, tmp_path):
    # naiveSyncBN keeps the two processes' BN statistics equal: each evaluates with model_final's weights.
    opts = ["SOLVER.MAX_ITER", "4", *SYNC_BN]
    # srun's two tasks; only task 1 gets SIGUSR1, and task 0, which saves, must stop with it.
    statuses = srun(toy_cityscapes["datasets"], tmp_path / "train", *opts, launcher=signalled(1, "1", "SIGUSR1"))
    assert statuses == [PREEMPTED_EXIT_STATUS] * 2
    log = (tmp_path / "train" / "log.txt").read_text()
    assert "World size: 2" in log
    assert "another process received a stop signal: stopping after iteration 1" in log
    rank1_log = (tmp_path / "train" / "log.txt.rank1").read_text()
    assert "SIGUSR1 received: stopping after iteration 1, the main process saves" in rank1_log
    assert (tmp_path / "train" / "last_checkpoint").read_text() == "model_0000001_preempted.pth"
    assert torch.load(tmp_path / "train" / "model_0000001_preempted.pth", weights_only=True)["iteration"] == 1

    # torchrun's two processes finish the run with --resume, then evaluate it.
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port()))  # fmt: skip
    resumed = train_net(toy_cityscapes["datasets"], tmp_path / "train", *opts, flags=["--resume"], launcher=torchrun)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "World size: 2" in resumed.stdout and "Starting training from iteration 2" in resumed.stdout
    assert (tmp_path / "train" / "last_checkpoint").read_text() == "model_final.pth"
    assert last_metrics(tmp_path / "train")["iteration"] == 3

    weights = ["MODEL.WEIGHTS", str(tmp_path / "train" / "model_final.pth"), *SYNC_BN]
    evaluated = train_net(toy_cityscapes["datasets"], tmp_path / "eval", *weights, flags=["--eval-only"])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    two, one = (torch.load(tmp_path / run / "inference" / "sem_seg_evaluation.pth", weights_only=False)
                for run in ("train", "eval"))  # fmt: skip
    assert one.keys() == two.keys()
    np.testing.assert_allclose([one[k] for k in one], [two[k] for k in one], rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize("nodelist, host", [
    ("node7", "node7"), ("gpu[07-09,12]", "gpu07"), ("gpu[3,5-6],cpu1", "gpu3"), ("a-1,b-2", "a-1"),
    ("rack[2-3]-n[10-11]", "rack2-n10"), ("n-[1-2],m", "n-1"),
])  # fmt: skip
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_environments_of_torchrun_and_srun():
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NNODES": "2",
             "SLURM_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}  # fmt: skip
    assert cluster_environment(slurm) == ClusterEnvironment("SLURM", 5, 8, 1, 4, "gpu07", 10000 + 123456 % 20000)
    overridden = cluster_environment({**slurm, "MASTER_ADDR": "10.0.0.3", "MASTER_PORT": "29400"})
    assert (overridden.master_addr, overridden.master_port) == ("10.0.0.3", 29400)
    # srun's step variables win over the job's.
    step = cluster_environment({**slurm, "SLURM_STEP_NUM_NODES": "4", "SLURM_STEP_NODELIST": "b[1-4]"})
    assert (step.local_world_size, step.master_addr) == (2, "b1")

    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "node1", "MASTER_PORT": "29500"}  # fmt: skip
    assert cluster_environment({**slurm, **torchrun}) == ClusterEnvironment("torchrun", 3, 4, 1, 2, "node1", 29500)

    assert cluster_environment({}) is None
    assert cluster_environment({**slurm, "SLURM_NTASKS": "1"}) is None
    with pytest.raises(InputError, match=r"SLURM_NTASKS=7 tasks on SLURM_NNODES=2 nodes"):
        cluster_environment({**slurm, "SLURM_NTASKS": "7"})
    for nodelist in ("", "gpu[1-2", "gpu[]"):
        with pytest.raises(InputError, match=re.escape(f"SLURM_NODELIST={nodelist!r} is not") + ".* set MASTER_ADDR"):
            cluster_environment({**slurm, "SLURM_NODELIST": nodelist})
    with pytest.raises(InputError, match=r"SLURM_PROCID='x': expected an integer"):
        cluster_environment({**slurm, "SLURM_PROCID": "x"})


class ModelOn(torch.nn.Module):
    """A stand-in for a model whose parameters are on ``device``: no GPU here."""

    def __init__(self, device):
        super().__init__()
        self.device = device

    def parameters(self, recurse=True):
        yield types.SimpleNamespace(device=self.device)


@pytest.mark.parametrize("visible, local_rank, tasks_per_node, device", [
    (1, 0, 2, 0), (1, 1, 2, 0),  # srun --gpus-per-task 1: each task sees only the GPU bound to it
    (2, 1, 2, 1), (8, 5, 8, 5),  # every process sees the node's GPUs: torchrun, srun --gpus-per-node
])  # fmt: skip
def test_ddp_device_ids_are_the_gpu_each_srun_task_was_given(monkeypatch, visible, local_rank, tasks_per_node, device):
    # launch() under srun on a simulated node with ``visible`` GPUs, then DDP as DefaultTrainer builds it.
    slurm = {"SLURM_PROCID": str(local_rank), "SLURM_NTASKS": str(tasks_per_node), "SLURM_LOCALID": str(local_rank),
             "SLURM_NNODES": "1", "SLURM_NODELIST": "gpu1", "SLURM_JOB_ID": "7"}  # fmt: skip
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[-1])
    for module, name in ((torch.distributed, "init_process_group"), (launch_module, "destroy_process_groups"),
                         (comm, "create_local_process_group"), (comm, "synchronize")):  # fmt: skip
        monkeypatch.setattr(module, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(comm, "get_world_size", lambda: tasks_per_node)
    monkeypatch.setattr(comm, "get_local_rank", lambda: local_rank)
    ddp_arguments = []
    monkeypatch.setattr(d2_defaults, "DistributedDataParallel", lambda model, **kwargs: ddp_arguments.append(kwargs))

    # detectron2's build_model puts the model on torch.device("cuda"), the current device.
    launch(lambda: create_ddp_model(ModelOn(torch.device("cuda", torch.cuda.current_device()))), 1)
    assert current == [device]
    assert ddp_arguments[0]["device_ids"] == [device]


def test_a_process_without_a_gpu_of_its_own_is_refused():
    # 4 tasks on a node where each sees 2 GPUs (its own two, or two shared by all): tasks 2 and 3 have none.
    slurm = {"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "2", "SLURM_NNODES": "1",
             "SLURM_NODELIST": "gpu1"}  # fmt: skip
    with pytest.raises(InputError, match="started local process 2 but 2 GPUs are visible: start at most one"):
        cuda_device(cluster_environment(slurm), visible=2)


def test_when_training_resumes_without_the_flag(tmp_path, monkeypatch):
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("danet.engine.preemption").addHandler(handler)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    cfg = cpu_cfg("demo.yaml", "OUTPUT_DIR", str(tmp_path))
    try:
        assert not resume_requested(cfg, False) and resume_requested(cfg, True)
        assert not messages  # an empty OUTPUT_DIR: nothing to say

        for name in ("model_0000009.pth", "model_0000012_preempted.pth"):
            (tmp_path / name).write_bytes(b"")
        (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
        assert not resume_requested(cfg, False)
        assert "holds the checkpoint model_0000009.pth but --resume was not given" in messages[-1]
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
        assert not resume_requested(cfg, False)
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
        assert resume_requested(cfg, False)
        assert "the job was restarted (SLURM_RESTART_COUNT=1)" in messages[-1]
        monkeypatch.delenv("SLURM_RESTART_COUNT")

        (tmp_path / "last_checkpoint").write_text("model_0000012_preempted.pth")
        assert resume_requested(cfg, False)
        assert "saved when a run was stopped by a signal" in messages[-1]
        cfg.PREEMPTION.AUTO_RESUME = False
        assert not resume_requested(cfg, False)
    finally:
        logging.getLogger("danet.engine.preemption").removeHandler(handler)


def test_preemption_config_is_checked():
    assert build_preemption_hook(cpu_cfg("demo.yaml", "PREEMPTION.SIGNALS", "()"), checkpointer=None) is None
    for name in ("SIGFOO", "SIGKILL"):
        with pytest.raises(InputError, match=f"PREEMPTION.SIGNALS: '{name}' is not a signal a process can catch"):
            build_preemption_hook(cpu_cfg("demo.yaml", "PREEMPTION.SIGNALS", f"('{name}',)"), checkpointer=None)
    with pytest.raises(InputError, match=r"PREEMPTION.CHECK_PERIOD is 0"):
        build_preemption_hook(cpu_cfg("demo.yaml", "PREEMPTION.CHECK_PERIOD", "0"), checkpointer=None)


GROUPS_AFTER_LAUNCH = """
import sys, weakref
sys.path.insert(0, {repo!r})
import torch.distributed as dist
from detectron2.utils import comm
from danet.engine import launch

groups = []

def main():
    comm.all_gather(comm.get_rank())  # detectron2 caches its gloo group here
    groups.extend(weakref.ref(g) for g in (dist.group.WORLD, comm.get_local_process_group()))

launch(main, 1)
print("groups alive after launch:", sum(g() is not None for g in groups))
"""


def test_launch_frees_the_process_groups_before_the_interpreter_exits(tmp_path):
    """A group that outlives launch() is destroyed during interpreter exit, where
    gloo's threads abort the process now and then (status 134 after a finished
    training); launch() leaves none alive, detectron2's cached ones included."""
    script = tmp_path / "groups.py"
    script.write_text(GROUPS_AFTER_LAUNCH.format(repo=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = inherited_environment()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(script)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("groups alive after launch: 0") == 2, done.stdout
