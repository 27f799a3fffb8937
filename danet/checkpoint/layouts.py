"""Checkpoints published by other projects, recognised from their keys and
renamed to this project's parameter names.

Each layout (``danet/checkpoint/<source>.py``) registers a :class:`WeightLayout`.
:func:`detect_layout` finds the one whose ``matches`` accepts a loaded state
dict; its ``convert`` renames it. A state dict already in this project's names
passes unchanged.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional

import torch

from .errors import CheckpointError

# First components of this project's parameter names (a detectron2 SemanticSegmentor).
PROJECT_PREFIXES = ("backbone.", "sem_seg_head.", "pixel_mean", "pixel_std")


@dataclass(frozen=True)
class WeightLayout:
    """How to read one project's checkpoints.

    Attributes:
        name: the value of ``tools/convert_weights.py --from``.
        description: what it holds, for messages and --help.
        matches: whether a state dict (already unwrapped from ``"state_dict"``
            or ``"model"``) is in this layout.
        convert: the state dict in this project's names. Raises
            CheckpointError naming any key it has no rule for.
        whole_model: False for backbones (ImageNet initialisation), whose
            missing head weights are expected.
    """

    name: str
    description: str
    matches: Callable[[Mapping[str, torch.Tensor]], bool]
    convert: Callable[[Mapping[str, torch.Tensor]], Dict[str, torch.Tensor]]
    whole_model: bool = True


LAYOUTS: Dict[str, WeightLayout] = {}


def register_layout(layout):
    """Add ``layout`` to LAYOUTS, which detection and ``--from`` offer; returns it."""
    LAYOUTS[layout.name] = layout
    return layout


def unwrap_state_dict(loaded):
    """The tensors of a loaded checkpoint: under ``"model"`` (detectron2),
    ``"state_dict"`` (mmseg, PyTorch-Encoding) or at the top (torchvision)."""
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            return loaded[key]
    return loaded


def is_project_layout(state_dict):
    return all(key.startswith(PROJECT_PREFIXES) for key in state_dict)


def detect_layout(state_dict, source="MODEL.WEIGHTS"):
    """The registered layout of ``state_dict``; CheckpointError if none matches."""
    for layout in LAYOUTS.values():
        if layout.matches(state_dict):
            return layout
    raise CheckpointError(
        f"{source}: unrecognised checkpoint layout (keys such as {summarize_keys(state_dict, limit=4)}); "
        f"known layouts: {', '.join(LAYOUTS) or 'none'} and this project's own (backbone.*, sem_seg_head.*)"
    )


def rename_keys(state_dict, rename: Callable[[str], Optional[str]], layout_name, dropped=()):
    """``state_dict`` with every key renamed by ``rename``.

    Keys starting with one of ``dropped`` are left out on purpose (e.g. an
    ImageNet classifier). A key for which ``rename`` returns None has no rule:
    CheckpointError names them all, so nothing is silently lost.
    """
    renamed, unmapped = {}, []
    for key, tensor in state_dict.items():
        if key.startswith(dropped):
            continue
        new_key = rename(key)
        if new_key is None:
            unmapped.append(key)
        else:
            renamed[new_key] = tensor
    if unmapped:
        raise CheckpointError(
            f"{layout_name} layout: no rule for {len(unmapped)} key(s): {summarize_keys(unmapped)}; "
            "the checkpoint holds a network this project does not build"
        )
    return renamed


def renamed_module(key, modules):
    """``key`` with its module (all but the last name) replaced by
    ``modules[module]``; None if ``modules`` has no such module."""
    module, _, attr = key.rpartition(".")
    return f"{modules[module]}.{attr}" if module in modules else None


def summarize_keys(keys, limit=3):
    """``keys`` (in their order) for a bounded one-line message: all of them
    when at most ``limit``, else the first of each module and how many more it
    has, for the first ``limit`` modules, and, when there are more modules,
    how many more and the total number of keys."""
    keys = list(keys)
    if len(keys) <= limit:
        return ", ".join(keys)
    groups = {}
    for key in keys:
        module = ".".join(key.split(".")[:2])
        groups.setdefault(module, [key, 0])[1] += 1
    shown = [first if count == 1 else f"{first} (+{count - 1} in {module})" for module, (first, count) in groups.items()]
    more = f" and {len(shown) - limit} more modules ({len(keys)} keys in all)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more
