"""Every config under configs/ (found on disk, so a new one is covered) builds, loads
the weights it names and trains and evaluates as train_net.py runs it.

For each config: the real-width model is built on CPU with BN; MODEL.WEIGHTS and
the checkpoint its header evaluates are replaced by random files in those
weights' layouts (tests/weight_layouts.py) and loaded strictly. Then the config,
with its network narrowed and its pixel sizes divided to fit generated images,
trains two iterations with train_net.py on generated data in its dataset's
on-disk layout, and train_net.py --eval-only evaluates what it saved.
"""

import glob
import math
import os
import shutil

import numpy as np
import pytest
import torch
import torchvision

from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

import train_net
from danet.checkpoint import SafeCheckpointer
from danet.config import load_config
from helpers import NARROW_RESNET, REPO, last_metrics
from test_datasets_standard import DATASETS as STANDARD_DATASETS
from test_datasets_standard import prepare
from mmseg_reference import mmseg  # noqa: F401  (the mmseg fixture)
from test_recipes import config_value
from weight_layouts import (
    evaluation_checkpoint,
    mmseg_danet_state_dict,
    mmseg_resnet_v1c_state_dict,
    synthesise_weights,
    torchvision_state_dict,
)

CONFIGS = sorted(
    os.path.relpath(path, os.path.join(REPO, "configs"))
    for path in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
)
# Keys in pixels, divided to fit the generated images.
SIZE_KEYS = (
    "INPUT.CROP.SIZE", "INPUT.SCALE.BASE_SIZE", "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN",
    "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "TEST.SLIDING_WINDOW.CROP_SIZE", "TEST.SLIDING_WINDOW.STRIDE",
)  # fmt: skip
# Dataset of a config (by its training split's name) -> how much smaller the generated images are.
DATASET_FAMILIES = {
    "cityscapes_fine_sem_seg_": ("cityscapes", 16),  # 128x64 generated, 2048x1024 real
    "toy_cityscapes_fine_sem_seg_": ("cityscapes", 3),  # the demo's 384x192
    "ade20k_sem_seg_": ("ade20k", 16),  # 56x40 generated
    "voc_2012_sem_seg_": ("voc", 16),
    "pascal_context_59_sem_seg_": ("pascal_context", 16),
    "coco_2017_": ("coco_stuff", 16),
}
# On CPU with BN, as the real-width model is built.
ON_CPU = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]
# The training part: two iterations of the config's recipe on a ResNet-50 of an
# eighth of the width (its stem, dilations and multi-grid kept) from random init.
TRAINING = NARROW_RESNET + [
    "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "50",
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
    "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def standard_datasets(tmp_path_factory):
    """ADE20K, VOC (+SBD), PASCAL Context and COCO-Stuff releases of a few images in
    their official layouts, prepared by datasets/prepare_*.py and registered under
    the names the configs use."""
    root = tmp_path_factory.mktemp("standard_datasets")
    for name, (make_release, script, register_all, *_) in STANDARD_DATASETS.items():
        make_release(root)
        done = prepare(script, root)
        assert done.returncode == 0, done.stderr
        register_all(str(root))
    yield root
    # Back to the datasets under $DETECTRON2_DATASETS, as `import danet` registered them.
    for _, _, register_all, *_ in STANDARD_DATASETS.values():
        register_all(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def dataset_of(cfg):
    train = cfg.DATASETS.TRAIN[0]
    for prefix, family in DATASET_FAMILIES.items():
        if train.startswith(prefix):
            return family
    raise AssertionError(f"DATASETS.TRAIN {train!r}: add its dataset to DATASET_FAMILIES")


def shrunk_sizes(cfg, factor):
    opts = []
    for key in SIZE_KEYS:
        value = config_value(cfg, key)
        small = [max(1, round(v / factor)) if v else 0 for v in np.atleast_1d(value).tolist()]
        opts += [key, str(tuple(small)) if isinstance(value, (tuple, list)) else str(small[0])]
    return opts


def backbone_sums(model):
    return {
        k: v.double().sum().item()
        for k, v in model.state_dict().items()
        if k.startswith("backbone.") and not k.endswith("num_batches_tracked")
    }


@pytest.fixture(scope="module")
def weights_directory(tmp_path_factory):
    """Where the random checkpoints go; configs naming the same weights share one."""
    directory = tmp_path_factory.mktemp("weights")
    yield directory
    shutil.rmtree(directory)  # a few GB


def load_named_weights(cfg, config_file, directory):
    """The real-width model of ``cfg`` loads random weights in the layout of its
    MODEL.WEIGHTS (every backbone tensor from the file) and of the checkpoint its
    header evaluates (every tensor, as --eval-only loads it)."""
    model = build_model(cfg)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if cfg.MODEL.WEIGHTS:
        path, layout = synthesise_weights(cfg.MODEL.WEIGHTS, directory, num_classes)
        initial = backbone_sums(model)
        SafeCheckpointer(model).resume_or_load(path, resume=False)
        loaded = backbone_sums(model)
        unchanged = [k for k in initial if initial[k] == loaded[k]]
        assert not unchanged, f"{layout} layout: backbone weights not loaded from MODEL.WEIGHTS: {unchanged[:5]}"
    evaluated = evaluation_checkpoint(config_file)
    if evaluated:
        path, layout = synthesise_weights(evaluated, directory, num_classes)
        SafeCheckpointer(model, require_all_weights=True).load(path, checkpointables=[])


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_its_weights_trains_and_evaluates(
    name, toy_cityscapes, standard_datasets, weights_directory, tmp_path
):
    config_file = os.path.join(REPO, "configs", name)
    cfg = load_config(config_file, ON_CPU)
    with torch.no_grad():
        load_named_weights(cfg, config_file, weights_directory)

    family, factor = dataset_of(cfg)
    datasets = []
    if family == "cityscapes":  # the toy Cityscapes in Cityscapes' layout, under other names
        datasets = ["DATASETS.TRAIN", f"('{toy_cityscapes['train']}',)", "DATASETS.TEST", f"('{toy_cityscapes['val']}',)"]  # fmt: skip
    output = tmp_path / "output"
    opts = ON_CPU + TRAINING + shrunk_sizes(cfg, factor) + datasets + ["OUTPUT_DIR", str(output)]
    train_net.main(default_argument_parser().parse_args(["--config-file", config_file, *opts, "DATASETS.TEST", "()"]))
    metrics = last_metrics(output)
    assert metrics["iteration"] == 1
    expected_losses = {"loss_fused", "loss_position", "loss_channel"}
    if cfg.MODEL.DANET.AUX.ENABLED:
        expected_losses.add("loss_aux")
    assert {k for k in metrics if k.startswith("loss_")} == expected_losses
    assert all(math.isfinite(metrics[k]) for k in expected_losses)

    weights = ["MODEL.WEIGHTS", str(output / "model_final.pth")]
    results = train_net.main(
        default_argument_parser().parse_args(["--config-file", config_file, "--eval-only", *opts, *weights])
    )
    tasks = {"sem_seg", "sem_seg_TTA"} if cfg.TEST.AUG.ENABLED else {"sem_seg"}
    assert set(results) == tasks and all(0 <= results[task]["mIoU"] <= 100 for task in tasks)
    shutil.rmtree(output)


def test_layouts_have_the_names_and_shapes_of_torchvision():
    for depth in (50, 101):
        expected = getattr(torchvision.models, f"resnet{depth}")().state_dict()
        layout = torchvision_state_dict(depth)
        assert list(layout) == list(expected)
        assert all(layout[k].shape == v.shape for k, v in expected.items())


@pytest.mark.parametrize("depth", [50, 101])
def test_layouts_have_the_names_and_shapes_of_mmseg(mmseg, depth):
    from mmengine.config import Config
    from mmseg.registry import MODELS

    configs = os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", "danet")
    for name, num_classes in (
        (f"danet_r{depth}-d8_4xb2-40k_cityscapes-512x1024.py", 19),
        (f"danet_r{depth}-d8_4xb4-80k_ade20k-512x512.py", 150),
    ):
        cfg = Config.fromfile(os.path.join(configs, name))
        cfg.model.pretrained = None
        expected = MODELS.build(cfg.model).state_dict()
        assert shapes(mmseg_danet_state_dict(depth, num_classes)) == shapes(expected), name
    backbone = MODELS.build(dict(type="ResNetV1c", depth=depth, dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1)))
    layout = mmseg_resnet_v1c_state_dict(depth)
    assert (layout.pop("fc.weight").shape, layout.pop("fc.bias").shape) == ((1000, 2048), (1000,))
    assert shapes(layout) == shapes(backbone.state_dict())


def shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}
