"""Configs of small CPU models and generated datasets shared by the tests."""
import contextlib
import http.server
import importlib.util
import itertools
import json
import os
import runpy
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cityscapesscripts.helpers.labels import trainId2label  # noqa: E402
import detectron2.engine  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.engine import HookBase  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from danet import add_danet_config  # noqa: E402
from danet.engine import build_lr_scheduler  # noqa: E402

BASE_CONFIG = os.path.join(REPO, "configs", "base.yaml")
CITYSCAPES_TRAIN_IDS = range(19)
CLASSES = [trainId2label[i].name for i in CITYSCAPES_TRAIN_IDS]
COLORS = [list(trainId2label[i].color) for i in CITYSCAPES_TRAIN_IDS]

# On CPU without downloads: random init and plain BN.
CPU_OPTS = [
    "MODEL.WEIGHTS", "",
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.NORM", "BN",
]
# A ResNet-50 narrow enough for fast CPU tests; the DANet head keeps its design.
NARROW_RESNET = [
    "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "32",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
]
# The narrow DANet-R50 on small test images: seconds per image.
TINY_MODEL_OPTS = CPU_OPTS + NARROW_RESNET + [
    "INPUT.MIN_SIZE_TEST", "48",
    "INPUT.MAX_SIZE_TEST", "96",
    "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip
# The demo config shrunk to the tiny generated dataset: a training step takes a fraction of a second.
TINY_DEMO = [
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "SOLVER.BASE_LR", "0.01",
    "INPUT.SCALE.BASE_SIZE", "128", "INPUT.CROP.SIZE", "(64, 96)",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128", "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip
# Set by torchrun and srun: a subprocess of the tests only sees those the test gives it.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def load_script(relative_path):
    """A script of this repository (``demo.py``, ``tools/x.py``) as a module,
    to call its ``main(argv)`` in-process."""
    name = os.path.splitext(os.path.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_cfg(name="base.yaml", *opts):
    """configs/<name> on CPU without downloads, then ``opts``."""
    cfg = get_cfg()
    add_danet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", name))
    cfg.merge_from_list(CPU_OPTS + [str(o) if isinstance(o, (int, float)) else o for o in opts])
    return cfg


def tiny_cfg(*opts):
    """The tiny DANet of TINY_MODEL_OPTS, then ``opts``."""
    return cpu_cfg("base.yaml", *TINY_MODEL_OPTS, *opts)


def save_tiny_weights(path, *opts, seed=0):
    """Random weights of tiny_cfg(*opts) saved as a detectron2 checkpoint:
    evaluation and prediction refuse to run without trained weights."""
    torch.manual_seed(seed)
    torch.save({"model": build_model(tiny_cfg(*opts)).state_dict()}, path)
    return str(path)


def register_toy_dataset(root, name, num_images=2, size=(48, 64), seed=0, colors=COLORS):
    """Random RGB images with random train-id ground truth (some 255) under
    ``root``, registered as a semantic segmentation dataset ``name`` with
    Cityscapes' classes."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    records = []
    for i in range(num_images):
        image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        gt = rng.integers(0, 19, size=size).astype(np.uint8)
        gt[rng.random(size) < 0.1] = 255
        image_file = os.path.join(root, f"image_{i}.png")
        gt_file = os.path.join(root, f"image_{i}_gt.png")
        Image.fromarray(image).save(image_file)
        Image.fromarray(gt).save(gt_file)
        records.append(
            {"file_name": image_file, "sem_seg_file_name": gt_file, "height": size[0], "width": size[1]}
        )
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=CLASSES, stuff_colors=colors, ignore_label=255, evaluator_type="sem_seg"
    )
    return records


def run_train_net_script(*argv):
    """Run train_net.py as a script in this process, up to launch(), which is
    not called: returns the (function, num_gpus) of each launch; a one-line
    error ends in SystemExit as from the script."""
    import danet.engine

    launched = []
    saved = sys.argv, detectron2.engine.launch, getattr(danet.engine, "launch", None)
    sys.argv = ["train_net.py", *argv]
    fake_launch = lambda function, num_gpus, **kwargs: launched.append((function, num_gpus))  # noqa: E731
    detectron2.engine.launch = danet.engine.launch = fake_launch
    try:
        runpy.run_path(os.path.join(REPO, "train_net.py"), run_name="__main__")
    finally:
        sys.argv, detectron2.engine.launch, danet.engine.launch = saved
    return launched


def inherited_environment():
    """This process's environment without the variables of a launcher (torchrun's,
    srun's): what a subprocess of the tests starts from."""
    return {
        key: value for key, value in os.environ.items()
        if key not in LAUNCHER_VARIABLES and not key.startswith(("SLURM_", "TORCHELASTIC_"))
    }  # fmt: skip


def train_net(datasets, output_dir, *opts, flags=(), background=False, launcher=(sys.executable,), env=()):
    """Run train_net.py on the demo config shrunk by TINY_DEMO in a subprocess
    started by ``launcher`` (a command that takes a script, such as torchrun's),
    with the datasets under ``datasets`` and the variables ``env``."""
    command = [
        *launcher, os.path.join(REPO, "train_net.py"), "--config-file", os.path.join(REPO, "configs", "demo.yaml"),
        *flags, *TINY_DEMO, "OUTPUT_DIR", str(output_dir), *opts,
    ]  # fmt: skip
    env = dict(inherited_environment(), DETECTRON2_DATASETS=str(datasets), PYTHONUNBUFFERED="1", **dict(env))
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def last_metrics(output_dir):
    """The last training metrics written to metrics.json (later lines hold evaluation results)."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [m for m in map(json.loads, f) if "total_loss" in m][-1]


def scheduled_lr(cfg, iteration):
    """The learning rate of cfg's schedule at ``iteration`` of an uninterrupted run."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)
    for _ in range(iteration):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def one_batch_trainer(cfg, batch, dtype=torch.float32):
    """train_net.py's Trainer for ``cfg`` with its model in ``dtype`` and a data
    loader that yields ``batch`` (a list of dataset dicts) at every iteration."""
    import train_net

    class OneBatchTrainer(train_net.Trainer):
        @classmethod
        def build_model(cls, cfg):
            return super().build_model(cfg).to(dtype)

        @classmethod
        def build_train_loader(cls, cfg):
            return itertools.repeat(batch)

    return OneBatchTrainer(cfg)


# The settings of a parameter in its optimiser group.
OPTIMIZER_SETTINGS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")


class TrainingRecorder(HookBase):
    """A trainer hook that keeps, for every iteration, each parameter's
    OPTIMIZER_SETTINGS as the step uses them (``settings``) and, with
    ``gradients``, each parameter's gradient of the step, all-reduced under DDP
    (``gradients``); parameters are named as in the model without DDP.

    The gradients are read after the step (SGD leaves them; the next step zeroes
    them): DefaultTrainer does not pass ``after_backward`` on to its hooks."""

    def __init__(self, gradients=False):
        self.record_gradients = gradients
        self.settings, self.gradients = [], []

    def named_parameters(self):
        model = self.trainer.model
        return getattr(model, "module", model).named_parameters()

    def before_step(self):
        group_of = {id(p): group for group in self.trainer.optimizer.param_groups for p in group["params"]}
        self.settings.append({
            name: {key: group_of[id(p)][key] for key in OPTIMIZER_SETTINGS} for name, p in self.named_parameters()
        })  # fmt: skip

    def after_step(self):
        if self.record_gradients:
            self.gradients.append({name: p.grad.clone() for name, p in self.named_parameters() if p.grad is not None})


def relative_error(actual, expected):
    """||actual - expected|| / ||expected|| (Frobenius norms), computed in float64."""
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago and that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(run):
    """The message ``run()`` exited with, checked to be one line (the scripts' InputError exit)."""
    with pytest.raises(SystemExit) as exit_info:
        run()
    message = str(exit_info.value.code)
    assert "\n" not in message
    return message


class _ServedFiles(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body, length = self.server.files.get(self.path, (None, None))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server():
    """An HTTP server on 127.0.0.1 in a thread; ``server.serve(url_path, body,
    length=None)`` makes it answer ``url_path`` with ``body`` and a
    Content-Length of ``length`` (default: the body's), and returns the URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ServedFiles)
    server.files = {}

    def serve(url_path, body, length=None):
        server.files[url_path] = (body, len(body) if length is None else length)
        return f"http://127.0.0.1:{server.server_port}{url_path}"

    server.serve = serve
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
