"""Start the training processes with detectron2's launch, or join the ones
torchrun or SLURM's srun started: their process group comes from the
environment those launchers set."""
import dataclasses
import gc
import os
import re
import sys

import torch
import torch.distributed as dist

from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm

from ..errors import InputError


@dataclasses.dataclass(frozen=True)
class ClusterEnvironment:
    """Where this process sits in a job that torchrun or srun started."""

    launcher: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int


def cluster_environment(env):
    """The ClusterEnvironment described by the variables ``env`` (os.environ):
    torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
    MASTER_PORT; else srun's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, node
    count and node list, with MASTER_ADDR / MASTER_PORT overriding the first
    node and the port derived from SLURM_JOB_ID. None outside both, and for a
    single SLURM task (which may start processes with --num-gpus)."""
    if all(name in env for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return ClusterEnvironment(
            launcher="torchrun",
            rank=_integer(env, "RANK"),
            world_size=_integer(env, "WORLD_SIZE"),
            local_rank=_integer(env, "LOCAL_RANK"),
            local_world_size=_integer(env, "LOCAL_WORLD_SIZE", default=_integer(env, "WORLD_SIZE")),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=_integer(env, "MASTER_PORT", default=29500),
        )
    if "SLURM_PROCID" not in env or _integer(env, "SLURM_NTASKS", default=1) == 1:
        return None
    world_size = _integer(env, "SLURM_NTASKS")
    num_nodes_key = next((k for k in ("SLURM_STEP_NUM_NODES", "SLURM_NNODES") if k in env), "SLURM_NNODES")
    num_nodes = _integer(env, num_nodes_key, default=1)
    if world_size % num_nodes:
        raise InputError(
            f"SLURM_NTASKS={world_size} tasks on {num_nodes_key}={num_nodes} nodes: start the same number "
            "of tasks on every node (sbatch --ntasks-per-node)."
        )
    nodelist_key = next((k for k in ("SLURM_STEP_NODELIST", "SLURM_NODELIST") if k in env), "SLURM_NODELIST")
    master_addr = env.get("MASTER_ADDR") or first_host(env.get(nodelist_key, ""), nodelist_key)
    return ClusterEnvironment(
        launcher="SLURM",
        rank=_integer(env, "SLURM_PROCID"),
        world_size=world_size,
        local_rank=_integer(env, "SLURM_LOCALID"),
        local_world_size=world_size // num_nodes,
        master_addr=master_addr,
        master_port=_integer(env, "MASTER_PORT", default=10000 + _integer(env, "SLURM_JOB_ID", default=0) % 20000),
    )


def first_host(nodelist, key="SLURM_NODELIST"):
    """The first host of a SLURM node list such as "gpu[07-09,12],cpu1" (gpu07),
    the node that runs task 0; ``scontrol show hostnames`` without scontrol."""
    first = re.match(r"((?:[^,\[\]]|\[[^\[\]]*\])+)(?:,|$)", nodelist.strip())
    host = re.sub(r"\[([^\[\],-]+)[^\[\]]*\]", r"\1", first.group(1)) if first else ""
    if not host or any(c in host for c in "[],"):
        raise InputError(
            f"{key}={nodelist!r} is not a node list I can read: set MASTER_ADDR to the first node's address."
        )
    return host


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=()):
    """detectron2's launch; in a process that torchrun or srun started as one
    of several, join their process group (NCCL on GPUs, gloo on the CPU) and
    detectron2's per-machine group, then run ``main_func(*args)``."""
    cluster = cluster_environment(os.environ)
    if cluster is None:
        return d2_launch(
            run_then_free_groups, num_gpus_per_machine, num_machines, machine_rank, dist_url, args=(main_func, *args)
        )
    if num_gpus_per_machine > 1 or num_machines > 1:
        raise InputError(
            f"--num-gpus / --num-machines under {cluster.launcher}, which starts the processes itself: "
            "drop them and start one process per GPU."
        )
    if cluster.world_size == 1:
        return main_func(*args)
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(cuda_device(cluster, torch.cuda.device_count()))
        backend = "nccl"
    os.environ.setdefault("MASTER_ADDR", cluster.master_addr)
    os.environ.setdefault("MASTER_PORT", str(cluster.master_port))
    # Before the rendezvous, which waits for every process: a job that hangs there shows where each one went.
    master = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    on_gpu = f" on cuda:{torch.cuda.current_device()}" if backend == "nccl" else ""
    print(
        f"{cluster.launcher} process: rank {cluster.rank} of {cluster.world_size}, local rank {cluster.local_rank} "
        f"of {cluster.local_world_size}, master {master}, {backend}{on_gpu}",
        file=sys.stderr,
        flush=True,
    )
    dist.init_process_group(
        backend, init_method="env://", rank=cluster.rank, world_size=cluster.world_size, timeout=DEFAULT_TIMEOUT
    )
    try:
        comm.create_local_process_group(cluster.local_world_size)
        comm.synchronize()
        return main_func(*args)
    finally:
        destroy_process_groups()


def run_then_free_groups(main_func, *args):
    """``main_func(*args)`` in a process detectron2's launch() started, then
    :func:`destroy_process_groups` if it joined a process group."""
    try:
        return main_func(*args)
    finally:
        if dist.is_initialized():
            destroy_process_groups()


def destroy_process_groups():
    """Destroy every process group, and drop detectron2's references to them
    (its local group, its cached gloo group) while the interpreter is alive.
    A group destroyed only at interpreter exit can abort the process in gloo's
    threads ("terminate called without an active exception", status 134) after
    training has finished, which a job script would take for a failure."""
    dist.destroy_process_group()
    comm._LOCAL_PROCESS_GROUP = None
    comm.create_local_process_group.cache_clear()
    comm._get_global_gloo_group.cache_clear()
    gc.collect()


def cuda_device(cluster, visible):
    """The index, among the ``visible`` GPUs, of this process's GPU: its local
    rank when each process sees all of the node's GPUs (torchrun, srun
    --gpus-per-node), 0 when it sees only one (srun --gpus-per-task 1, the GPU
    SLURM bound to the task). DDP's device_ids follow the model onto it
    (create_ddp_model)."""
    device = cluster.local_rank if visible > 1 else 0
    if device >= visible:
        raise InputError(
            f"{cluster.launcher} started local process {cluster.local_rank} but {visible} GPUs are visible: "
            "start at most one process per GPU (srun --gpus-per-task 1, or as many tasks per node as GPUs)."
        )
    return device


def _integer(env, key, default=None):
    """The integer value of the environment variable ``key`` (``default`` when it is
    unset and a default is given); an InputError naming it otherwise."""
    if key not in env and default is not None:
        return default
    try:
        return int(env[key])
    except (KeyError, ValueError):
        raise InputError(
            f"Environment variable {key}={env.get(key)!r}: expected an integer (set by torchrun / srun)."
        ) from None
