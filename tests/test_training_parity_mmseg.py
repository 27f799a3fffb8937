"""This project's training against mmsegmentation 1.2.2's, step by step in float64.

mmseg's DANet-R50 is built from its own config, narrowed (stem, base and head
channels) so that float64 steps are fast, with BN instead of SyncBN, dropout 0
and random weights with non-trivial BN statistics and attention scales; it is
saved as mmseg saves a checkpoint. mmseg then trains it with its own training
step (``train_step``: the model's losses, mmengine's OptimWrapper with its SGD)
and its PolyLR stepped after every iteration, as mmengine's IterBasedTrainLoop
and ParamSchedulerHook do. The project loads the checkpoint through
MODEL.WEIGHTS into the model of configs/mmseg/danet_r50-d8_512x1024_40k_cityscapes.yaml
narrowed the same way, and trains it with train_net.py's Trainer (its model,
optimizer, scheduler and detectron2's training loop with all its hooks) on a
loader that yields the same batch, with ignored pixels, at every iteration.

Compared: every loss term of every iteration, each parameter's optimiser
settings (learning rate included) at every iteration, and at the end every
weight, BN running statistic and batch count.
"""
import copy
import os

import pytest
import torch

from helpers import OPTIMIZER_SETTINGS, REPO, TrainingRecorder, one_batch_trainer, relative_error
from mmseg_reference import build_mmseg_danet, mmseg, mmseg_danet_config, save_as_mmseg  # noqa: F401  (mmseg: a fixture)

from danet.checkpoint import detect_layout
from danet.config import load_config

CONFIG = os.path.join(REPO, "configs", "mmseg", "danet_r50-d8_512x1024_40k_cityscapes.yaml")
# The whole schedule, down to eta_min at its last iteration.
ITERATIONS = 4
SIZE = (48, 64)
IGNORED_FRACTION = 0.2

BN = {"type": "BN", "requires_grad": True}
# mmseg's config narrowed: ResNet-V1c stem 8-8-16, bottleneck width 8 (res5 256
# channels), head channels 256 / 4 with PAM 64 / 8, auxiliary head 128 / 4.
MMSEG_NARROW = {
    "model.backbone.stem_channels": 16, "model.backbone.base_channels": 8, "model.backbone.norm_cfg": BN,
    "model.decode_head.in_channels": 256, "model.decode_head.channels": 64, "model.decode_head.pam_channels": 8,
    "model.decode_head.norm_cfg": BN, "model.decode_head.dropout_ratio": 0.0,
}  # fmt: skip
MMSEG_AUX_NARROW = {
    "model.auxiliary_head.in_channels": 128, "model.auxiliary_head.channels": 32,
    "model.auxiliary_head.norm_cfg": BN, "model.auxiliary_head.dropout_ratio": 0.0,
}  # fmt: skip
# The same network in this project's keys (the head's widths follow from BRANCH_REDUCTION and KEY_REDUCTION).
PROJECT_NARROW = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "32", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN",
    "MODEL.DANET.DROPOUT", "0.0",
]  # fmt: skip
# This project's loss names and mmseg's (train_step's log_vars).
LOSS_NAMES = {
    "loss_fused": "decode.pam_cam.loss_ce", "loss_position": "decode.pam.loss_ce",
    "loss_channel": "decode.cam.loss_ce", "loss_aux": "aux.loss_ce", "total_loss": "loss",
}  # fmt: skip
# (aux head, MODEL.DANET.MEMORY_SAVING)
VARIANTS = {"danet": (False, False), "with_aux_head": (True, False), "memory_saving": (True, True)}


def fixed_batch(seed=0):
    """Two RGB images and their labels, IGNORED_FRACTION of the pixels ignored (255)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, *SIZE), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 19, (2, *SIZE), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < IGNORED_FRACTION] = 255
    return images, labels


def mmseg_training(mmseg_model, mmseg_cfg, images, labels):
    """mmseg's run: per iteration, each parameter's optimiser settings (mmseg's
    names) and train_step's losses; then the trained model."""
    from mmengine.model import BaseDataPreprocessor
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model = copy.deepcopy(mmseg_model).double().train()
    # SegDataPreProcessor's normalisation, here in float64 (it casts to float32); the batch
    # then goes through unchanged (crop-sized already, nothing to pad).
    inputs = (images.double() - model.data_preprocessor.mean) / model.data_preprocessor.std
    model.data_preprocessor = BaseDataPreprocessor()
    samples = [SegDataSample(gt_sem_seg=PixelData(data=label[None])) for label in labels]
    optim_wrapper = build_optim_wrapper(model, mmseg_cfg.optim_wrapper)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(scheduler, end=ITERATIONS), default_args={"optimizer": optim_wrapper})
        for scheduler in mmseg_cfg.param_scheduler
    ]
    names = {id(p): name for name, p in model.named_parameters()}
    settings, losses = [], []
    for _ in range(ITERATIONS):
        settings.append({
            names[id(p)]: {key: group[key] for key in OPTIMIZER_SETTINGS}
            for group in optim_wrapper.optimizer.param_groups for p in group["params"]
        })  # fmt: skip
        log_vars = model.train_step({"inputs": inputs, "data_samples": samples}, optim_wrapper)
        losses.append({name: value.item() for name, value in log_vars.items()})
        for scheduler in schedulers:  # ParamSchedulerHook.after_train_iter
            scheduler.step()
    return settings, losses, model


def project_training(weights, images, labels, output_dir, *opts):
    """train_net.py's Trainer on the fixed batch: per iteration each parameter's
    optimiser settings and the losses it logged; then the trained model and how
    many times per iteration a conv of res5 ran (2 when the backward recomputes it)."""
    cfg = load_config(CONFIG, [
        "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", *PROJECT_NARROW, "SOLVER.MAX_ITER", str(ITERATIONS),
        "DATASETS.TEST", "()", "OUTPUT_DIR", str(output_dir), *opts,
    ])  # fmt: skip
    cfg.freeze()
    batch = [{"image": image, "sem_seg": label, "height": SIZE[0], "width": SIZE[1]} for image, label in zip(images, labels)]
    trainer = one_batch_trainer(cfg, batch, dtype=torch.float64)
    recorder = TrainingRecorder()
    trainer.register_hooks([recorder])
    runs = []
    trainer.model.backbone.res5[0].conv1.register_forward_hook(lambda *_: runs.append(1))
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [
        {name: trainer.storage.history(name).values()[i][0] for name in LOSS_NAMES if name in trainer.storage.histories()}
        for i in range(ITERATIONS)
    ]
    return (recorder.settings, losses, trainer.model), len(runs) / ITERATIONS


def mmseg_to_project_names(mmseg_names):
    """mmseg's name of each parameter or buffer -> this project's, by the project's converter."""
    indices = {name: torch.tensor(float(i)) for i, name in enumerate(mmseg_names)}
    converted = detect_layout(indices).convert(indices)
    return {mmseg_names[int(value.item())]: name for name, value in converted.items()}


@pytest.fixture(scope="module")
def reference_runs(mmseg, tmp_path_factory):
    """``run(aux)``: mmseg's checkpoint of the narrow DANet (with or without its
    auxiliary head), its weights, and mmseg's training of it; once per module."""
    runs = {}

    def get(aux):
        if aux not in runs:
            options = {**MMSEG_NARROW, **(MMSEG_AUX_NARROW if aux else {"model.auxiliary_head": None})}
            model, cfg = build_mmseg_danet(mmseg, 50, "512x1024", options)
            path = str(tmp_path_factory.mktemp("mmseg") / f"danet_r50_narrow_aux{aux}.pth")
            save_as_mmseg(model, cfg, path)
            runs[aux] = path, copy.deepcopy(model.state_dict()), mmseg_training(model, cfg, *fixed_batch())
        return runs[aux]

    return get


def differences(initial, reference, project):
    """The largest relative differences of the project's run from mmseg's, in
    this project's names: of the losses, of the optimiser settings, of the
    final state (weights, BN statistics and batch counts) and of each floating
    tensor's change over the run."""
    (mmseg_settings, mmseg_losses, mmseg_model), (settings, losses, model) = reference, project
    to_project = mmseg_to_project_names(list(initial))

    def in_project_names(state_dict):  # (mmseg's attention scales are 0-d, this project's of shape (1,))
        shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
        return {to_project[name]: tensor.reshape(shapes[to_project[name]]) for name, tensor in state_dict.items()}

    loss = max(
        abs(step[name] / mmseg_step[LOSS_NAMES[name]] - 1)
        for step, mmseg_step in zip(losses, mmseg_losses) for name in step
    )  # fmt: skip
    setting = 0.0
    for step, mmseg_step in zip(settings, mmseg_settings):
        mmseg_step = {to_project[name]: values for name, values in mmseg_step.items()}
        assert step.keys() == mmseg_step.keys()
        for name, values in mmseg_step.items():
            for key, value in values.items():
                got = step[name][key]
                setting = max(setting, abs(got / value - 1) if value else abs(got - value))
    start, expected, state = in_project_names(initial), in_project_names(mmseg_model.state_dict()), model.state_dict()
    assert state.keys() == expected.keys()
    floating = [name for name in state if state[name].is_floating_point()]
    # The batch counts: every BN counted each iteration once, also when recomputed (memory saving).
    assert all(torch.equal(state[name], expected[name]) for name in state if name not in floating)
    assert all(expected[name] - start[name] == ITERATIONS for name in state if name.endswith("num_batches_tracked"))
    final = max(relative_error(state[name], expected[name]) for name in floating)
    change = max(relative_error(state[name] - start[name], expected[name] - start[name]) for name in floating)
    return {"losses": loss, "optimiser settings": setting, "final state": final, "change of each tensor": change}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_training_steps_match_mmseg(reference_runs, tmp_path, variant):
    aux, memory_saving = VARIANTS[variant]
    weights, initial, reference = reference_runs(aux)
    opts = ["MODEL.DANET.AUX.ENABLED", str(aux), "MODEL.DANET.MEMORY_SAVING", str(memory_saving)]
    project, runs_per_iteration = project_training(weights, *fixed_batch(), tmp_path, *opts)
    losses, model = project[1], project[2]
    assert [sorted(step) for step in losses] == [sorted(n for n in LOSS_NAMES if aux or n != "loss_aux")] * ITERATIONS
    assert next(model.parameters()).dtype == torch.float64 and runs_per_iteration == 1 + memory_saving

    measured = differences(initial, reference, project)
    print(f"{variant}: " + ", ".join(f"{what} {value:.1e}" for what, value in measured.items()))
    assert all(value < 1e-8 for value in measured.values()), measured


def same_distribution(a, b):
    """Whether tensors ``a`` and ``b`` look drawn from one distribution: equal if
    either is constant, else a two-sample Kolmogorov-Smirnov test at level 0.001."""
    a, b = a.detach().flatten().double().sort().values, b.detach().flatten().double().sort().values
    if a[0] == a[-1] or b[0] == b[-1]:
        return bool(a[0] == a[-1] == b[0] == b[-1])
    values = torch.cat([a, b])
    cdf_a, cdf_b = (torch.searchsorted(x, values, right=True) / len(x) for x in (a, b))
    statistic = (cdf_a - cdf_b).abs().max()
    return statistic.item() <= 1.95 * ((len(a) + len(b)) / (len(a) * len(b))) ** 0.5


def project_head(head_init):
    """The narrow model's DANetHead with its auxiliary head, initialised by ``head_init``."""
    from detectron2.layers import ShapeSpec
    from danet.modeling.danet_head import DANetHead

    cfg = load_config(CONFIG, [*PROJECT_NARROW, "MODEL.DANET.HEAD_INIT", head_init])
    return DANetHead(cfg, {"res4": ShapeSpec(channels=128), "res5": ShapeSpec(channels=256)})


# The parameters mmseg initialises otherwise than PyTorch does: the conv-norm-relu
# convs (Kaiming-normal) and the classifiers named conv_seg (Normal, std 0.01, bias 0).
MMSEG_INITIALISED = {
    "position_branch.0.weight", "position_branch.2.weight", "channel_branch.0.weight", "channel_branch.2.weight",
    "aux_head.0.weight", "fused_predictor.1.weight", "fused_predictor.1.bias", "aux_head.1.1.weight", "aux_head.1.1.bias",
}  # fmt: skip


def test_head_init_is_mmsegs_or_pytorchs(mmseg):
    """HEAD_INIT "mmseg" draws every head parameter as mmseg's runner does
    (model.init_weights()); "pytorch" as PyTorch's defaults (the DANet authors'
    plain layers). The test tells the two apart on exactly MMSEG_INITIALISED."""
    from mmseg.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(mmseg_danet_config(mmseg, 50, "512x1024", {**MMSEG_NARROW, **MMSEG_AUX_NARROW}).model)
    model.init_weights()
    to_project = mmseg_to_project_names(list(model.state_dict()))
    prefix = "sem_seg_head."
    mmseg_init = {to_project[n][len(prefix):]: p for n, p in model.named_parameters() if to_project[n].startswith(prefix)}
    heads = {head_init: dict(project_head(head_init).named_parameters()) for head_init in ("mmseg", "pytorch")}
    defaults = copy.deepcopy(project_head("pytorch"))
    for module in defaults.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    pytorch_init = dict(defaults.named_parameters())
    assert heads["mmseg"].keys() == mmseg_init.keys() == pytorch_init.keys()

    def differing(parameters, reference):
        return {name for name, p in parameters.items() if not same_distribution(p, reference[name])}

    assert differing(heads["mmseg"], mmseg_init) == set()
    assert differing(heads["pytorch"], pytorch_init) == set()
    assert differing(heads["pytorch"], mmseg_init) == differing(heads["mmseg"], pytorch_init) == MMSEG_INITIALISED
