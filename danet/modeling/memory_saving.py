"""Memory-lean training: activation checkpointing of the backbone's blocks, the
head's branches and the loss terms, which then keep nothing at the label resolution.

At output stride 8 the activations of res4 and res5 dominate training memory.
A checkpointed part keeps only its input in the forward and runs its forward
again in the backward (``torch.utils.checkpoint``, non-reentrant: it works
under DDP, autocast and with frozen parameters). :class:`DANetSegmentor`
applies the parts chosen by ``MODEL.DANET.MEMORY_SAVING*`` when it is built,
so every model built from a config (detectron2's ``build_model``, the trainer,
a benchmark) has them.

No module is wrapped or renamed, so state_dict keys and checkpoints are the
same with savings on or off: a checkpointed module gets a :class:`RecomputedForward`
as its own ``forward`` attribute (the head a :class:`RecomputedLosses` as its
``losses``). These objects hold the module itself, not a closure over it, so
``copy.deepcopy`` of a model (an EMA or SWA copy) gives a copy whose
recompute uses the copy's weights, and a model pickles with its savings.

Batch norm: the recompute runs the forward in training mode again, which would
update the running statistics a second time. The recompute runs under
:func:`restored_buffers`, which puts every buffer of the part back as it was
once the recompute is over: running statistics are updated once per step,
exactly as without checkpointing, for BN, SyncBN and detectron2's naiveSyncBN.
"""
import contextlib

import torch
from torch.utils.checkpoint import checkpoint

from ..errors import InputError

BACKBONE_PARTS = ("stem", "res2", "res3", "res4", "res5")
HEAD_PARTS = ("position_branch", "channel_branch")
CHECKPOINT_PARTS = BACKBONE_PARTS + HEAD_PARTS + ("losses",)
# What MODEL.DANET.MEMORY_SAVING True recomputes: the parts that free the most
# memory per second of recompute; the head branches free little for what their
# recompute costs (benchmarks/bench_saved_activations.py, docs/BENCHMARKS.md).
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


class RecomputedForward:
    """The ``forward`` of a checkpointed module: its class's forward, run again
    in the backward when the module trains with gradients; its buffers are
    updated by the first run only."""

    def __init__(self, module):
        self.module = module

    def __call__(self, *args, **kwargs):
        module = self.module
        forward = type(module).forward.__get__(module)
        if not (module.training and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, context_fn=self.contexts, **kwargs)

    def contexts(self):
        """(the forward's context, the recompute's context)."""
        return contextlib.nullcontext(), restored_buffers(self.module)


class RecomputedLosses:
    """The ``losses`` of a checkpointed head: each loss term's resize to the
    label size and log-softmax run again in the backward, which then keeps the
    logits at the feature resolution instead of a float32 [B, K, H, W]
    log-probability map per term, and holds one such map at a time."""

    def __init__(self, head):
        self.head = head

    def __call__(self, logits, targets):
        return {
            name: checkpoint(self.one_term, name, prediction, targets, use_reentrant=False)
            for name, prediction in logits.items()
        }

    def one_term(self, name, prediction, targets):
        """Loss term ``name`` of one prediction by the head's own ``losses``: what the
        backward computes again."""
        return type(self.head).losses(self.head, {name: prediction}, targets)[name]


def checkpointed_parts(cfg):
    """The parts named by MODEL.DANET.MEMORY_SAVING_CHECKPOINT, and SWITCH_PARTS
    when MODEL.DANET.MEMORY_SAVING is on, in CHECKPOINT_PARTS' order."""
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


def checkpoint_parts(model, parts):
    """Make ``parts`` (of CHECKPOINT_PARTS) of a SemanticSegmentor with a
    detectron2 ResNet and a DANetHead recompute in the backward; returns
    ``model``. Applying a part twice is the same as once."""
    for part in parts:
        if part == "losses":
            model.sem_seg_head.losses = RecomputedLosses(model.sem_seg_head)
            continue
        module = part_module(model, part)
        # Each block of a stage on its own: the backward then holds one block's activations at a time.
        for unit in module if part in BACKBONE_PARTS[1:] else [module]:
            unit.forward = RecomputedForward(unit)
    return model


def apply_memory_saving(model, cfg):
    """Apply the savings chosen by ``cfg``'s MODEL.DANET.MEMORY_SAVING* keys to
    a built model (e.g. a copy of a model built without them); returns ``model``."""
    return checkpoint_parts(model, checkpointed_parts(cfg))
