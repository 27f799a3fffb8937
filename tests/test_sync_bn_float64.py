"""Synchronised BN under DDP in float64: two gloo processes with one image each
train as one process with both images.

train_net.py's Trainer (SyncBN becomes detectron2's naiveSyncBN on CPU, DDP
all-reduces the gradients) on two processes, against the same Trainer with
plain BN on one process and the batch of both images; dropout 0. Both images
ignore as many pixels, so that each process's mean loss over its valid pixels
weighs them as the one-process mean does (with LOSS_AVERAGE all_pixels that
holds whatever they ignore, up to its epsilon). In float32 rounding flips ReLUs
and hides real differences; float64 shows them.
BN's running variance is not compared: naiveSyncBN updates it with the biased
batch variance, torch's BN with the unbiased one.
"""

import torch

from detectron2.modeling import build_model
from detectron2.utils import comm

from helpers import TrainingRecorder, one_batch_trainer, relative_error, tiny_cfg
from danet.engine import adapt_to_device, launch

SIZE = (48, 64)
STEPS = 2
OPTS = [
    "MODEL.DANET.AUX.ENABLED", "True", "MODEL.DANET.DROPOUT", "0.0",
    "SOLVER.MAX_ITER", str(STEPS), "SOLVER.BASE_LR", "0.02", "SOLVER.WARMUP_ITERS", "0", "DATASETS.TEST", "()",
]  # fmt: skip


def images_and_labels():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, *SIZE), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 19, (2, *SIZE), generator=generator)
    # As many ignored pixels in each: the top rows of one, scattered in the other.
    labels[0, :12] = 255
    labels[1].view(-1)[torch.randperm(labels[1].numel(), generator=generator)[: 12 * SIZE[1]]] = 255
    return images, labels


def train(cfg, images, labels):
    """The Trainer's run on ``images``: each step's gradients and the final parameters."""
    batch = [{"image": image, "sem_seg": label} for image, label in zip(images, labels)]
    trainer = one_batch_trainer(cfg, batch, dtype=torch.float64)
    recorder = TrainingRecorder(gradients=True)
    trainer.register_hooks([recorder])
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = getattr(trainer.model, "module", trainer.model)
    return recorder.gradients, {name: p.detach().clone() for name, p in model.named_parameters()}


def train_one_image_per_process(opts, images, labels, result_file):
    cfg = tiny_cfg(*opts)
    adapt_to_device(cfg)  # as train_net.py's setup: SyncBN -> naiveSyncBN on CPU
    assert cfg.MODEL.RESNETS.NORM == cfg.MODEL.SEM_SEG_HEAD.NORM == "naiveSyncBN"
    rank = comm.get_rank()
    result = train(cfg, images[rank : rank + 1], labels[rank : rank + 1])
    if rank == 0:
        torch.save(result, result_file)


def test_two_processes_with_sync_bn_train_as_one_with_bn(tmp_path):
    cfg = tiny_cfg(*OPTS)
    torch.manual_seed(0)
    model = build_model(cfg)
    for module in model.modules():  # the attention modules away from the identity
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.5)
    torch.save({"model": model.state_dict()}, tmp_path / "initial.pth")
    initial = {name: p.detach().double() for name, p in model.named_parameters()}
    opts = [*OPTS, "MODEL.WEIGHTS", str(tmp_path / "initial.pth"), "OUTPUT_DIR"]
    images, labels = images_and_labels()

    sync_bn = ["MODEL.RESNETS.NORM", "SyncBN", "MODEL.SEM_SEG_HEAD.NORM", "SyncBN"]
    result_file = str(tmp_path / "two.pth")
    launch(train_one_image_per_process, 2, dist_url="auto",
           args=([*opts, str(tmp_path / "two"), *sync_bn], images, labels, result_file))  # fmt: skip
    gradients, weights = torch.load(result_file, weights_only=False)
    expected_gradients, expected_weights = train(tiny_cfg(*opts, str(tmp_path / "one")), images, labels)

    assert len(gradients) == len(expected_gradients) == STEPS
    worst_gradient = 0.0
    for step, expected in zip(gradients, expected_gradients):
        assert step.keys() == expected.keys() == initial.keys()
        # Gradients that are zero in exact arithmetic (PAM's key bias: it shifts each query's
        # energies by a constant, which the softmax removes) are rounding: zero to 1e-12.
        negligible = 1e-12 * torch.cat([g.flatten() for g in expected.values()]).norm()
        zero = {name for name, g in expected.items() if g.norm() <= negligible}
        assert zero == {"sem_seg_head.position_branch.1.key.bias"}
        assert all(step[name].norm() <= negligible for name in zero)
        worst_gradient = max(worst_gradient, *(relative_error(step[n], expected[n]) for n in expected if n not in zero))
    # Each parameter's change over the two steps.
    worst_change = max(relative_error(weights[n] - initial[n], expected_weights[n] - initial[n]) for n in initial)
    print(f"two processes against one, largest relative differences: gradient {worst_gradient:.1e}, "
          f"two-step change {worst_change:.1e}")  # fmt: skip
    assert worst_gradient < 1e-9 and worst_change < 1e-9
