"""Memory-lean training: activation checkpointing of the backbone's blocks, the
head's branches and the loss terms, which then keep nothing at the label resolution.

At output stride 8 the activations of res4 and res5 dominate training memory.
A checkpointed part keeps only its input in the forward and runs its forward
again in the backward (``torch.utils.checkpoint``, non-reentrant: it works
under DDP, autocast and with frozen parameters). The savings are applied to a
built model from outside (:func:`apply_memory_saving`): no module is wrapped or
renamed, so state_dict keys and checkpoints are the same with savings on or off.

Batch norm: the recompute runs the forward in training mode again, which would
update the running statistics a second time. The recompute runs under
:func:`restored_buffers`, which puts every buffer of the part back as it was
once the recompute is over: running statistics are updated once per step,
exactly as without checkpointing, for BN, SyncBN and detectron2's naiveSyncBN.
"""
import contextlib
import functools

import torch
from torch.utils.checkpoint import checkpoint

from ..errors import InputError

BACKBONE_PARTS = ("stem", "res2", "res3", "res4", "res5")
HEAD_PARTS = ("position_branch", "channel_branch")
CHECKPOINT_PARTS = BACKBONE_PARTS + HEAD_PARTS + ("losses",)
# What MODEL.DANET.MEMORY_SAVING True recomputes: the parts that free the most
# memory per second of recompute (benchmarks/bench_saved_activations.py; R50 at
# 512x1024, batch 2: each head branch frees 0.2 GB for 7% of a step, res5 0.88 GB
# for 16%, res4 0.81 GB for 4%, the losses 0.29 GB for 4%).
SWITCH_PARTS = BACKBONE_PARTS + ("losses",)


@contextlib.contextmanager
def restored_buffers(module):
    """Run the body, then give every buffer of ``module`` (BN running mean,
    variance, batch count) back its value from before the body."""
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def checkpoint_module(module):
    """Make ``module`` recompute its forward in the backward when it trains with
    gradients; its buffers are updated by the first forward only."""
    forward = module.forward

    def contexts():  # (the forward's, the recompute's)
        return contextlib.nullcontext(), restored_buffers(module)

    @functools.wraps(forward)
    def checkpointed_forward(*args, **kwargs):
        if not (module.training and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)

    module.forward = checkpointed_forward
    return module


def checkpoint_losses(head):
    """Make each of the head's loss terms recompute its resize to the label size
    and its log-softmax in the backward: the backward then keeps the logits at
    the feature resolution instead of a float32 [B, K, H, W] log-probability
    map per term, and holds one such map at a time."""
    losses = head.losses

    def one_term(name, prediction, targets):
        return losses({name: prediction}, targets)[name]

    def checkpointed_losses(logits, targets):
        return {
            name: checkpoint(one_term, name, prediction, targets, use_reentrant=False)
            for name, prediction in logits.items()
        }

    head.losses = checkpointed_losses
    return head


def checkpointed_parts(cfg):
    """The parts named by MODEL.DANET.MEMORY_SAVING_CHECKPOINT, and SWITCH_PARTS
    when MODEL.DANET.MEMORY_SAVING is on."""
    danet = cfg.MODEL.DANET
    unknown = [part for part in danet.MEMORY_SAVING_CHECKPOINT if part not in CHECKPOINT_PARTS]
    if unknown:
        raise InputError(
            f"MODEL.DANET.MEMORY_SAVING_CHECKPOINT: unknown part(s) {unknown}; choose from {list(CHECKPOINT_PARTS)}"
        )
    chosen = set(danet.MEMORY_SAVING_CHECKPOINT) | set(SWITCH_PARTS if danet.MEMORY_SAVING else ())
    return [part for part in CHECKPOINT_PARTS if part in chosen]


def part_module(model, part):
    """The module of a SemanticSegmentor that checkpoint part ``part`` (not
    "losses") recomputes."""
    owner = model.backbone if part in BACKBONE_PARTS else model.sem_seg_head
    module = getattr(owner, part, None)
    if module is None:
        raise InputError(f"MODEL.DANET.MEMORY_SAVING_CHECKPOINT: the model has no {part!r} to checkpoint")
    return module


def apply_memory_saving(model, cfg):
    """Apply the savings chosen by the MODEL.DANET.MEMORY_SAVING* keys to a
    built SemanticSegmentor with a detectron2 ResNet and a DANetHead; returns
    ``model``."""
    for part in checkpointed_parts(cfg):
        if part == "losses":
            checkpoint_losses(model.sem_seg_head)
            continue
        module = part_module(model, part)
        # Each block of a stage on its own: the backward then holds one block's activations at a time.
        for unit in module if part in BACKBONE_PARTS[1:] else [module]:
            checkpoint_module(unit)
    return model
