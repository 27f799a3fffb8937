import os
import subprocess
import sys
import uuid

import pytest
import torch

from helpers import REPO  # noqa: E402  (puts the repository on sys.path)

from danet import register_cityscapes_sem_seg  # noqa: E402
from slurm_cluster import SlurmCluster, missing_programs  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def generate_toy_cityscapes(datasets, train, val):
    """A generated Cityscapes of ``train`` and ``val`` 128x64 images with its
    labelTrainIds in ``datasets``/toy_cityscapes, registered under unique names:
    {"root", "train", "val", "datasets"}. With DETECTRON2_DATASETS set to
    "datasets", a subprocess finds it as toy_cityscapes_fine_sem_seg_{train,val}."""
    root = datasets / "toy_cityscapes"
    for script, *args in (
        ("make_toy_cityscapes.py", "--out", root, "--width", 128, "--height", 64, "--train", train, "--val", val),
        ("prepare_cityscapes.py", "--root", root),
    ):
        done = subprocess.run([sys.executable, os.path.join(REPO, "datasets", script), *map(str, args)],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    names = {"root": str(root), "datasets": str(datasets)}
    for split in ("train", "val"):
        names[split] = f"toy_{split}_{uuid.uuid4().hex[:8]}"
        register_cityscapes_sem_seg(names[split], str(root), split)
    return names


@pytest.fixture(scope="session")
def toy_cityscapes(tmp_path_factory):
    """A tiny generated Cityscapes: 4 train, 2 val images (generate_toy_cityscapes)."""
    return generate_toy_cityscapes(tmp_path_factory.mktemp("datasets"), train=4, val=2)


@pytest.fixture(scope="session")
def toy_cityscapes_pair(tmp_path_factory):
    """The tiny generated Cityscapes with 2 train images, one batch of two
    processes: every iteration trains on both, whichever process gets which."""
    return generate_toy_cityscapes(tmp_path_factory.mktemp("datasets"), train=2, val=2)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A private single-node SLURM (tests/slurm_cluster.py) for the session, with
    8 CPUs declared on this machine's cores; stopped, with any job left, at the
    end of the session, also after a failure or Ctrl-C. Skipped without SLURM's
    programs or root, unless DANET_REQUIRE_SLURM=1 (CI), where that fails."""
    missing = missing_programs()
    problem = (
        f"SLURM is not installed ({', '.join(missing)} missing): "
        "apt-get install slurmctld slurmd slurm-client munge" if missing
        else "the private SLURM runs its daemons as root" if os.geteuid() != 0 else None
    )  # fmt: skip
    if problem:
        if os.environ.get("DANET_REQUIRE_SLURM") == "1":
            pytest.fail(problem + " (DANET_REQUIRE_SLURM=1)")
        pytest.skip(problem)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=8).start()
    try:
        yield cluster
    finally:
        cluster.stop()
