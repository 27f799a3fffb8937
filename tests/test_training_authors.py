"""configs/official/danet101_cityscapes.yaml trains as the DANet authors' code does:
train_net.py's Trainer (its model, optimizer, LR schedule and training loop) against
a functional rebuild of their training step (tests/authors_reference.py: their
forward, SegmentationMultiLosses, params_list with the head at 10x, SGD and poly
LR), in float64 from the same weights on the same batches: every loss term, the
learning rate of every parameter at every step, and every weight and BN statistic
after the last step. BN instead of SyncBN (one process) and dropout 0 on both sides.
"""

import os

import pytest
import torch

import train_net
from authors_reference import IGNORE_INDEX, danet_outputs, multi_loss, set_poly_lr, sgd
from danet.checkpoint import LAYOUTS
from danet.config import load_config
from detectron2.engine import HookBase
from helpers import CPU_OPTS, REPO
from test_weights_official import NARROW
from weight_layouts import authors_state_dict, save_authors_checkpoint

CONFIG = os.path.join(REPO, "configs", "official", "danet101_cityscapes.yaml")
# Three steps of a 3-iteration poly schedule: the learning rate falls to 0.37x of its start.
STEPS, BATCH, SIZE = 3, 2, (64, 96)
NUM_CLASSES = 19


class FixedBatches(train_net.Trainer):
    """train_net.py's Trainer in float64, fed the given batches instead of a dataset."""

    batches = []

    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg).double()
        # The normalisation buffers were made in float32: 1e-7 off, enough to flip a ReLU.
        with torch.no_grad():
            model.pixel_mean.copy_(torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=torch.float64).view(-1, 1, 1))
            model.pixel_std.copy_(torch.tensor(cfg.MODEL.PIXEL_STD, dtype=torch.float64).view(-1, 1, 1))
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        return cls.batches


class Record(HookBase):
    """Each step's learning rate per parameter name and loss terms."""

    def __init__(self):
        self.lrs, self.losses = [], []

    def before_step(self):
        names = {id(p): n for n, p in self.trainer.model.named_parameters()}
        self.lrs.append({names[id(p)]: g["lr"] for g in self.trainer.optimizer.param_groups for p in g["params"]})

    def after_step(self):
        storage = self.trainer.storage
        self.losses.append({k: storage.history(k).latest() for k in ("loss_fused", "loss_position", "loss_channel")})


def random_batches(seed=0):
    """STEPS batches of random images with labels, a fifth of them ignored (255)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(STEPS):
        batch = []
        for _ in range(BATCH):
            image = torch.randint(0, 256, (3, *SIZE), generator=generator).double()
            label = torch.randint(0, NUM_CLASSES, SIZE, generator=generator)
            label[torch.rand(SIZE, generator=generator) < 0.2] = 255
            batch.append({"image": image, "sem_seg": label})
        batches.append(batch)
    return batches


def train_theirs(state_dict, batches, cfg):
    """Their training loop (danet/train.py Trainer.training) on ``batches``."""
    state_dict = {
        k: v.double().clone().requires_grad_(v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
        for k, v in state_dict.items()
    }
    optimizer = sgd(state_dict, cfg.SOLVER.BASE_LR, cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)[:, None, None]
    lrs, losses = [], []
    for iteration, batch in enumerate(batches):
        set_poly_lr(optimizer, cfg.SOLVER.BASE_LR, iteration, cfg.SOLVER.MAX_ITER)
        lrs.append([group["lr"] for group in optimizer.param_groups])
        # ToTensor (/255) then Normalize; labels 255 -> -1.
        images = torch.stack([(x["image"] / 255 - mean) / std for x in batch])
        target = torch.stack([x["sem_seg"] for x in batch])
        target = torch.where(target == 255, IGNORE_INDEX, target)
        optimizer.zero_grad()
        total, each = multi_loss(danet_outputs(state_dict, images, (1,) + (2,) * 22, (4, 8, 16), training=True), target)
        total.backward()
        optimizer.step()
        losses.append([loss.item() for loss in each])
    return {k: v.detach() for k, v in state_dict.items()}, lrs, losses


def test_training_steps_match_the_authors(tmp_path):
    weights = save_authors_checkpoint(tmp_path / "DANet101.pth.tar", authors_state_dict(101, planes=8, stem=16))
    opts = CPU_OPTS + NARROW + [
        "MODEL.WEIGHTS", weights, "MODEL.DANET.DROPOUT", "0.0",
        "SOLVER.MAX_ITER", str(STEPS), "SOLVER.IMS_PER_BATCH", str(BATCH),
        "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "output"),
    ]  # fmt: skip
    cfg = load_config(CONFIG, opts)
    batches = random_batches()

    FixedBatches.batches = batches[:]
    trainer = FixedBatches(cfg)
    trainer.resume_or_load(resume=False)
    record = Record()
    trainer.register_hooks([record])
    trainer.train()

    theirs, their_lrs, their_losses = train_theirs(torch.load(weights, weights_only=True)["state_dict"], batches, cfg)

    # Both compute in float64 throughout, the losses included.
    tolerance = 1e-10
    for step, (ours, expected) in enumerate(zip(record.losses, their_losses)):
        got = [ours["loss_fused"], ours["loss_position"], ours["loss_channel"]]
        assert got == pytest.approx(expected, rel=tolerance), f"step {step}"
    for step, (ours, (backbone_lr, head_lr)) in enumerate(zip(record.lrs, their_lrs)):
        assert len(ours) == len(list(trainer.model.parameters()))
        for name, lr in ours.items():
            expected = head_lr if name.startswith("sem_seg_head.") else backbone_lr
            assert lr == pytest.approx(expected, rel=1e-12), f"step {step}: {name}"
    for group in trainer.optimizer.param_groups:
        assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, 1e-4, False)

    expected = LAYOUTS["official"].convert(theirs)
    final = trainer.model.state_dict()
    compared = [k for k in final if not k.endswith("num_batches_tracked")]
    assert set(compared) <= set(expected)
    for key in compared:
        torch.testing.assert_close(
            final[key], expected[key], rtol=tolerance, atol=tolerance * expected[key].abs().max().item(), msg=key
        )
