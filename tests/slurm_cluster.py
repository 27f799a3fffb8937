"""A private single-node SLURM for the tests: munged, slurmctld and slurmd run
as root from a folder of their own (configuration, key, state, spool, logs,
sockets), on ports of their own, with this host as controller and only node.

    cluster = SlurmCluster(folder)
    cluster.start()          # returns when sinfo shows the node idle
    job = cluster.submit("tools/slurm/train.sbatch", "configs/demo.yaml", ...)
    cluster.job(job)["JobState"]   # "PENDING", "RUNNING", ..., "COMPLETED" (scontrol show job)
    cluster.stop()           # ends exactly the three daemons start() started

Differences from a production slurm.conf, each for the tests' sake:
- ``CPUs`` declares more CPUs than the machine has (``SlurmdParameters=config_overrides``
  makes slurmd accept that), so that several two-task jobs run at once on 2 cores.
- A requeued job is held until ``now + cred_expire + 1`` (job_mgr.c: the new launch
  credential must postdate the revoked one), and then waits for the next scheduling
  pass. With SLURM's defaults (``cred_expire`` 120 s, ``bf_interval`` 30 s,
  ``sched_interval`` 60 s) that is the hold of about 2.5 minutes a requeued job sees.
  Here ``AuthInfo=cred_expire=10`` (5 is SLURM's minimum; a launch credential must
  stay valid while a loaded machine starts the step) and a scheduling pass every
  second start a requeued job about 11 s after the requeue. On a cluster an
  administrator can skip the hold of one job with ``scontrol update JobId=<id>
  StartTime=now`` (tried here: slurmd starts it at once); ``scontrol release`` does
  not apply, the job is not held but waits for its begin time.
- Time limits are checked every 30 s (PERIODIC_TIMEOUT, not configurable), and
  ``--signal=SIG@N`` is sent at the first check where at most N + 30 s remain.
"""
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import time

from helpers import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")


def missing_programs():
    """The SLURM and munge programs not on PATH (Debian: slurmctld slurmd slurm-client munge)."""
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [name for name in DAEMONS + CLIENTS if shutil.which(name, path=search) is None]


def _end_with_parent():
    """In a child before exec: receive SIGTERM when the process that started it dies,
    however it dies (prctl PR_SET_PDEATHSIG), so no daemon outlives the tests."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class SlurmCluster:
    def __init__(self, folder, cpus=8):
        self.folder = os.path.abspath(folder)
        self.cpus = cpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = os.path.join(self.folder, "slurm.conf")
        self._daemons = []  # (name, Popen), in start order

    @property
    def env(self):
        """The environment for SLURM's commands: this cluster's slurm.conf, none of
        the variables of a job this process may itself run in."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
        env["SLURM_CONF"] = self.conf
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        return env

    def start(self, timeout=60):
        os.makedirs(self.folder, exist_ok=True)
        for name in ("state", "spool"):
            os.makedirs(os.path.join(self.folder, name), exist_ok=True)
        key = os.path.join(self.folder, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        with open(os.path.join(self.folder, "plugstack.conf"), "w"):
            pass  # no SPANK plugins of the machine's /etc/slurm
        with open(self.conf, "w") as f:
            f.write(self._slurm_conf())
        try:
            # --force: munged refuses a socket in a folder others cannot enter; only root uses it here.
            files = {"socket": "munge.socket", "pid-file": "munged.pid", "log-file": "munged.log",
                     "seed-file": "munged.seed"}  # fmt: skip
            self._start("munged", "--foreground", "--force", f"--key-file={key}",
                        *(f"--{option}={self._path(name)}" for option, name in files.items()))  # fmt: skip
            self._wait(lambda: os.path.exists(self._path("munge.socket")), timeout, "munged's socket")
            self._start("slurmctld", "-D", "-f", self.conf)
            self._start("slurmd", "-D", "-f", self.conf, "-N", self.node)
            self._wait(self._node_idle, timeout, f"sinfo to show node {self.node} idle")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout=30):
        """Kill the jobs still running (their processes outlive slurmd), then end the
        daemons start() started (SIGTERM, then SIGKILL), the last started first."""
        if self._daemons and all(process.poll() is None for _, process in self._daemons):
            jobs = self.run("squeue", "--noheader", "--format=%i", check=False).stdout.split()
            if jobs:
                self.run("scancel", "--full", "--signal=KILL", *jobs, check=False)
                self.run("scancel", *jobs, check=False)
                try:
                    self._wait(lambda: not self.run("squeue", "--noheader", check=False).stdout.strip(), timeout,
                               "the cancelled jobs to end")  # fmt: skip
                except TimeoutError:
                    pass  # the daemons are stopped all the same
        for _, process in reversed(self._daemons):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for _, process in reversed(self._daemons):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._daemons = []

    def run(self, *command, check=True, timeout=60):
        """A SLURM command against this cluster; its CompletedProcess (text)."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}")
        return done

    def submit(self, script, *args, options=(), env=None, cwd=None):
        """sbatch ``options`` ``script`` ``args`` from ``cwd``; the job id. The job gets
        the variables ``env`` (sbatch exports them), by default those of self.env."""
        command = ["sbatch", "--parsable", *options, script, *args]
        env = self.env if env is None else {**env, "SLURM_CONF": self.conf, "PATH": self.env["PATH"]}
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def job(self, job_id):
        """``scontrol show job`` of ``job_id`` as a dict (JobState, Reason, Restarts, ExitCode, RunTime, ...)."""
        line = self.run("scontrol", "show", "job", "--oneliner", str(job_id)).stdout.strip()
        return dict(field.split("=", 1) for field in line.split() if "=" in field)

    def task_pids(self, job_id):
        """{global task rank: pid} of the tasks of the job's srun steps (``scontrol listpids``)."""
        pids = {}
        for line in self.run("scontrol", "listpids", str(job_id)).stdout.splitlines()[1:]:
            pid, _, step, _, rank = line.split()[:5]
            if step.isdigit() and rank.isdigit():  # not the batch step, nor helper processes ("-")
                pids[int(rank)] = int(pid)
        return pids

    @staticmethod
    def describe(info):
        return ", ".join(f"{key} {info.get(key)}" for key in ("JobState", "Reason", "Restarts", "ExitCode", "RunTime"))

    def log_tail(self, lines=30):
        """The end of the daemons' logs, for a failure message."""
        tails = []
        for name in ("slurmctld.log", "slurmd.log"):
            try:
                with open(self._path(name)) as f:
                    tails.append(f"--- {name}\n" + "".join(f.readlines()[-lines:]))
            except FileNotFoundError:
                pass
        return "\n".join(tails)

    def _slurm_conf(self):
        return "\n".join([
            "ClusterName=danettest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self._path('munge.socket')},cred_expire=10",
            f"StateSaveLocation={self._path('state')}",
            f"SlurmdSpoolDir={self._path('spool')}",
            f"SlurmctldPidFile={self._path('slurmctld.pid')}",
            f"SlurmdPidFile={self._path('slurmd.pid')}",
            f"SlurmctldLogFile={self._path('slurmctld.log')}",
            f"SlurmdLogFile={self._path('slurmd.log')}",
            f"PlugStackConfig={self._path('plugstack.conf')}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SlurmdParameters=config_overrides",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=3600",  # finished jobs stay visible to scontrol for the session
            # Job ids, and the MASTER_PORT 10000 + id of their processes, unlike another cluster's of these tests.
            f"FirstJobId={random.randrange(1, 19000)}",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ])  # fmt: skip

    def _path(self, name):
        return os.path.join(self.folder, name)

    def _start(self, name, *args):
        program = shutil.which(name, path=self.env["PATH"])
        with open(self._path(f"{name}.out"), "wb") as out:
            process = subprocess.Popen([program, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, preexec_fn=_end_with_parent)  # fmt: skip
        self._daemons.append((name, process))

    def _node_idle(self):
        for name, process in self._daemons:
            if process.poll() is not None:
                with open(self._path(f"{name}.out"), errors="replace") as f:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{f.read()[-3000:]}")
        done = self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False)
        return done.returncode == 0 and done.stdout.split() == ["idle"]

    def _wait(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}\n{self.log_tail()}")
            time.sleep(0.2)
