"""The job scripts of tools/slurm/ run by a real SLURM (the private cluster of
tests/slurm_cluster.py): a time limit's warning signal, preemption with
``scancel --signal=TERM``, ``scontrol requeue``, a task killed with SIGKILL and
torchrun's preemption each interrupt a job, which is requeued and resumes; the
final model of each equals, bit for bit, the one of an uninterrupted job.

Why bit for bit is possible: on a resume detectron2's TrainingSampler starts its
stream of indices again from the seed (it does not record its position), so a
resumed run sees the images in another order than an uninterrupted one, and any
random augmentation or dropout draws other numbers. These jobs train on two
images, one per process (IMS_PER_BATCH 2), so every iteration trains on both
whichever process gets which, without random augmentation or dropout; the
gradients and naiveSyncBN's statistics are sums over the two processes, the same
in either order. Everything that must survive a stop (weights, optimizer state,
LR schedule, iteration) is then compared exactly: model_final.pth and the final
evaluation of each job equal those of the uninterrupted job of its length.

The jobs run concurrently (the cluster declares 8 CPUs on this machine's cores:
four two-task jobs at a time, the others wait in SLURM's queue), each driven by
a thread that polls its state, with generous timeouts for a loaded machine.
"""
import concurrent.futures
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, TINY_DEMO, inherited_environment

TRAIN = os.path.join(REPO, "tools", "slurm", "train.sbatch")
TRAIN_TORCHRUN = os.path.join(REPO, "tools", "slurm", "train_torchrun.sbatch")
# The scripts' #SBATCH lines ask for GPUs; on this cluster's CPUs: two tasks of one CPU.
ON_CPUS = ("--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=10")
TORCHRUN_ON_CPUS = ("--gpus-per-node=0", "--ntasks-per-node=1", "--cpus-per-task=2", "--time=10")
# The longest jobs start first; the others wait in SLURM's queue for a free CPU.
FIRST = (*ON_CPUS, "--nice=-100")
# Training whose every iteration is the same whatever the data order (see above).
ORDER_FREE = [
    *TINY_DEMO, "INPUT.SCALE.RANGE", "(1.0, 1.0)", "INPUT.CROP.ENABLED", "False", "INPUT.RANDOM_FLIP", "none",
    "MODEL.DANET.DROPOUT", "0.0", "SEED", "7", "MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN",
]  # fmt: skip
# Stopped by the test after the first periodic checkpoint (iteration 3).
SHORT = [*ORDER_FREE, "SOLVER.MAX_ITER", "20", "SOLVER.CHECKPOINT_PERIOD", "4"]
# Long enough that SLURM's time-limit check (every 30 s) comes during training.
LONG = [*ORDER_FREE, "SOLVER.MAX_ITER", "160"]
TIMEOUT = 1200  # seconds for each wait: generous, for a machine other jobs load
STOPPING = threading.Event()  # set when the tests end early: the drivers stop waiting
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "DEADLINE")


@dataclass
class Job:
    """A job of the cluster and the files it writes; ``notes`` are what its driver saw."""

    cluster: object
    id: str
    output_dir: Path
    out: Path  # the job's standard output (srun's tasks and the script), appended across requeues
    notes: dict = field(default_factory=dict)

    def info(self):
        return self.cluster.job(self.id)

    def text(self, name="log.txt"):
        """A file of OUTPUT_DIR (default rank 0's log), "" while it does not exist."""
        path = self.output_dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, condition, what, timeout=TIMEOUT):
        """Poll ``condition()`` until it holds; fail naming ``what``, the job's state and output
        when the job ended before, after ``timeout`` seconds, or when the tests are stopped."""
        deadline = time.monotonic() + timeout
        while not condition():
            info = self.info()
            if info["JobState"] in ENDED and not condition():
                self.fail(f"ended ({self.cluster.describe(info)}) before {what}")
            if time.monotonic() > deadline or STOPPING.is_set():
                self.fail(f"waited {timeout} s for {what}; it is {self.cluster.describe(info)}")
            time.sleep(1)

    def wait_state(self, state, what, timeout=TIMEOUT):
        """Wait until the job is in ``state``; its info then."""
        seen = {}

        def reached():
            seen.update(self.info())
            return seen["JobState"] == state

        self.wait(reached, what, timeout)
        return seen

    def fail(self, message):
        output = self.out.read_text(errors="replace")[-4000:] if self.out.exists() else "(no output)"
        raise AssertionError(f"job {self.id}: {message}\n--- its output:\n{output}\n{self.cluster.log_tail(10)}")


def submit(cluster, datasets, folder, script, options, *opts, env=()):
    """sbatch the shipped ``script`` on configs/demo.yaml with ``opts`` into ``folder``/output,
    from the repository's root, with none of the launchers' variables of this process."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**inherited_environment(), "PYTHON": sys.executable, "DETECTRON2_DATASETS": datasets, "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", **dict(env)}  # fmt: skip
    out = folder / "job.out"
    job_id = cluster.submit(script, "configs/demo.yaml", str(folder / "output"), *opts, env=env, cwd=REPO,
                            options=[*options, f"--output={out}", f"--job-name={folder.name}"])  # fmt: skip
    return Job(cluster, job_id, folder / "output", out)


def seconds(duration):
    """SLURM's [D-]HH:MM:SS in seconds."""
    days, _, clock = duration.rpartition("-")
    hours, minutes, secs = (int(part) for part in clock.split(":"))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + secs


def uninterrupted(cluster, datasets, folder, opts, options=ON_CPUS):
    job = submit(cluster, datasets, folder, TRAIN, options, *opts)
    job.wait_state("COMPLETED", "training to complete")
    return job


def stopped_at_time_limit(cluster, datasets, folder):
    job = submit(cluster, datasets, folder, TRAIN, FIRST, *LONG)
    job.wait(lambda: job.text("metrics.json"), "training to write its first metrics (iteration 19)")
    # Lower the time limit so that train.sbatch's --signal=USR1@120 is due: SLURM sends
    # it at its next time-limit check (every 30 s), at least 90 s before the new limit.
    limit = (seconds(job.info()["RunTime"]) + 150) // 60
    cluster.run("scontrol", "update", f"JobId={job.id}", f"TimeLimit={limit}")
    job.wait(lambda: "stopping after iteration" in job.text(), "SLURM's SIGUSR1 before the time limit")
    # The requeued job keeps the job's time limit: raise it, so that the resumed run is not stopped again.
    cluster.run("scontrol", "update", f"JobId={job.id}", "TimeLimit=10")
    job.wait_state("COMPLETED", "the requeued job to complete")
    return job


def interrupted(interrupt, script=TRAIN, options=ON_CPUS, opts=(), env=()):
    """The scenario of a SHORT job of ``script`` that ``interrupt(cluster, job)``
    interrupts after its first periodic checkpoint (iteration 3), until the
    requeued job completes."""

    def scenario(cluster, datasets, folder):
        job = submit(cluster, datasets, folder, script, options, *SHORT, *opts, env=env)
        job.wait(lambda: (job.output_dir / "model_0000003.pth").exists(), "the checkpoint of iteration 3")
        interrupt(cluster, job)
        job.wait_state("COMPLETED", "the requeued job to complete")
        return job

    return scenario


def scancel_signal_term(cluster, job):
    cluster.run("scancel", "--signal=TERM", job.id)


def scontrol_requeue(cluster, job):
    cluster.run("scontrol", "requeue", job.id)


def kill_task_1_then_requeue(cluster, job):
    os.kill(cluster.task_pids(job.id)[1], signal.SIGKILL)
    job.notes["failed"] = job.wait_state("FAILED", "the job to fail after its task 1 was killed")
    job.notes["last_checkpoint"] = job.text("last_checkpoint")
    scontrol_requeue(cluster, job)  # what its user does


def torchrun_failing_after_a_stop(cluster, datasets, folder):
    # A run that fails (its checkpoint to resume from is corrupt) where a stop left a _preempted
    # checkpoint: torchrun exits with 1 as after a stop, but this run saved no new checkpoint.
    output_dir = folder / "output"
    output_dir.mkdir(parents=True)
    (output_dir / "model_0000003_preempted.pth").write_bytes(b"not a checkpoint")
    (output_dir / "last_checkpoint").write_text("model_0000003_preempted.pth")
    job = submit(cluster, datasets, folder, TRAIN_TORCHRUN, TORCHRUN_ON_CPUS, *SHORT, env={"NPROC_PER_NODE": "2"})
    job.notes["failed"] = job.wait_state("FAILED", "the job to fail")
    return job


SCENARIOS = {
    "long_reference": lambda cluster, datasets, folder: uninterrupted(cluster, datasets, folder, LONG, FIRST),
    "time_limit": stopped_at_time_limit,
    "short_reference": lambda cluster, datasets, folder: uninterrupted(cluster, datasets, folder, SHORT),
    # With a data-loader worker, which SLURM signals with the task.
    "scancel": interrupted(scancel_signal_term, opts=("DATALOADER.NUM_WORKERS", "1")),
    "scontrol_requeue": interrupted(scontrol_requeue),
    "task_killed": interrupted(kill_task_1_then_requeue),
    "torchrun": interrupted(scancel_signal_term, TRAIN_TORCHRUN, TORCHRUN_ON_CPUS, env={"NPROC_PER_NODE": "2"}),
    "torchrun_failure": torchrun_failing_after_a_stop,
}


@pytest.fixture(scope="module")
def jobs(slurm_cluster, toy_cityscapes_pair, tmp_path_factory):
    """The jobs of SCENARIOS, submitted and driven concurrently: {name: Future of its Job}."""
    folder = tmp_path_factory.mktemp("slurm_jobs")
    pool = concurrent.futures.ThreadPoolExecutor(len(SCENARIOS))
    futures = {
        name: pool.submit(scenario, slurm_cluster, toy_cityscapes_pair["datasets"], folder / name)
        for name, scenario in SCENARIOS.items()
    }
    try:
        yield futures
    finally:
        STOPPING.set()
        pool.shutdown(wait=True)
        STOPPING.clear()


def model_and_metrics(job):
    weights = torch.load(job.output_dir / "model_final.pth", weights_only=True)["model"]
    metrics = torch.load(job.output_dir / "inference" / "sem_seg_evaluation.pth", weights_only=False)
    return weights, metrics


def assert_same_training(job, reference):
    """model_final.pth of ``job`` is that of ``reference``, bit for bit, and so are the final metrics."""
    weights, metrics = model_and_metrics(job)
    expected_weights, expected_metrics = model_and_metrics(reference)
    assert weights.keys() == expected_weights.keys()
    different = [name for name in weights if not torch.equal(weights[name], expected_weights[name])]
    assert not different, f"{len(different)} tensors differ from the uninterrupted job's, e.g. {different[:3]}"
    assert metrics.keys() == expected_metrics.keys()
    np.testing.assert_array_equal([metrics[k] for k in metrics], [expected_metrics[k] for k in metrics])


def stop_iteration(job, signal_name):
    """The iteration after which both processes stopped, each on ``signal_name`` or
    on the other's signal (whichever reached it first), as their logs say."""
    pattern = rf"(\S+) received(?: a stop signal)?: stopping after iteration (\d+), "
    stops = [re.findall(pattern, job.text(log)) for log in ("log.txt", "log.txt.rank1")]
    assert all(len(found) == 1 for found in stops), stops  # one stop per process in the job's life
    (received, iteration), (received_1, iteration_1) = stops[0][0], stops[1][0]
    assert signal_name in (received, received_1) and {received, received_1} <= {signal_name, "process"}
    assert iteration == iteration_1
    return int(iteration)


def assert_resumed_from(job, checkpoint, why, max_iter):
    iteration = int(re.fullmatch(r"model_(\d{7})(_preempted)?\.pth", checkpoint).group(1))
    log = job.text()
    assert f"Resuming from {job.output_dir / checkpoint} as with --resume: {why}" in log
    assert f"Starting training from iteration {iteration + 1}" in log
    assert 0 < iteration < max_iter - 1
    info = job.info()
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0")
    assert (job.output_dir / "last_checkpoint").read_text() == "model_final.pth"


PREEMPTED_WHY = "it was saved when a run was stopped by a signal"


def test_time_limit_signal_stops_saves_requeues_and_resumes_to_the_uninterrupted_model(jobs):
    job, reference = jobs["time_limit"].result(), jobs["long_reference"].result()
    iteration = stop_iteration(job, "SIGUSR1")
    checkpoint = f"model_{iteration:07d}_preempted.pth"
    log = job.text()
    assert f"saving {checkpoint} and exiting with status 75" in log
    assert f"train.sbatch: training stopped on a signal and saved a checkpoint: requeueing job {job.id}" in (
        job.out.read_text()
    )
    assert job.info()["Restarts"] == "1"  # requeued once, by the script: SLURM does not requeue at a time limit
    assert_resumed_from(job, checkpoint, PREEMPTED_WHY, max_iter=160)
    assert_same_training(job, reference)


def test_scancel_preemption_resumes_to_the_uninterrupted_model(jobs):
    job, reference = jobs["scancel"].result(), jobs["short_reference"].result()
    iteration = stop_iteration(job, "SIGTERM")
    assert "requeueing job" in job.out.read_text() and job.info()["Restarts"] == "1"
    assert_resumed_from(job, f"model_{iteration:07d}_preempted.pth", PREEMPTED_WHY, max_iter=20)
    assert_same_training(job, reference)


def test_scontrol_requeue_resumes_to_the_uninterrupted_model(jobs):
    job, reference = jobs["scontrol_requeue"].result(), jobs["short_reference"].result()
    # SLURM stops the running job (SIGTERM to every process, the script's too) and requeues it itself.
    iteration = stop_iteration(job, "SIGTERM")
    assert job.info()["Restarts"] == "1"
    assert_resumed_from(job, f"model_{iteration:07d}_preempted.pth", PREEMPTED_WHY, max_iter=20)
    assert_same_training(job, reference)


def test_killed_task_fails_the_job_and_the_requeued_job_resumes_from_the_periodic_checkpoint(jobs):
    job, reference = jobs["task_killed"].result(), jobs["short_reference"].result()
    failed = job.notes["failed"]
    # srun's status is the killed task's 128 + 9; the script does not requeue it.
    assert (failed["ExitCode"], failed["Restarts"]) == ("137:0", "0")
    checkpoint = job.notes["last_checkpoint"]
    assert re.fullmatch(r"model_\d{7}\.pth", checkpoint)  # periodic: nothing was saved on the kill
    assert "received: stopping" not in job.text()
    assert_resumed_from(job, checkpoint, "the job was restarted (SLURM_RESTART_COUNT=1)", max_iter=20)
    assert_same_training(job, reference)


def test_torchrun_preemption_is_told_from_failure_by_the_new_checkpoint(jobs):
    job, reference = jobs["torchrun"].result(), jobs["short_reference"].result()
    iteration = stop_iteration(job, "SIGTERM")
    checkpoint = f"model_{iteration:07d}_preempted.pth"
    out = job.out.read_text()
    assert f"srun: error: {job.cluster.node}: task 0: Exited with exit code 1" in out  # torchrun's status
    assert f"train_torchrun.sbatch: training stopped on a signal and saved {checkpoint}: requeueing job" in out
    assert_resumed_from(job, checkpoint, PREEMPTED_WHY, max_iter=20)
    assert_same_training(job, reference)


def test_rank_world_size_local_rank_and_master_come_from_slurm(jobs):
    for name in ("short_reference", "scancel"):
        job = jobs[name].result()
        out = job.out.read_text()
        master = f"master {job.cluster.node}:{10000 + int(job.id) % 20000}"  # SLURM_NODELIST, SLURM_JOB_ID
        for rank in (0, 1):
            assert f"SLURM process: rank {rank} of 2, local rank {rank} of 2, {master}, gloo" in out
        assert "Rank of current process: 0. World size: 2" in job.text()
        assert "Rank of current process: 1. World size: 2" in job.text("log.txt.rank1")


def test_torchrun_failure_after_a_stop_is_not_requeued(jobs):
    job = jobs["torchrun_failure"].result()
    failed = job.notes["failed"]
    assert (failed["ExitCode"], failed["Restarts"]) == ("1:0", "0")
    out = job.out.read_text()
    assert "model_0000003_preempted.pth" in out and "train_net.py: error:" in out
    assert "requeueing" not in out
    assert job.text("last_checkpoint") == "model_0000003_preempted.pth"
