"""Checkpoints published by other projects, recognised from their keys and
renamed to this project's parameter names.

Each layout (``danet/checkpoint/<source>.py``) registers a :class:`WeightLayout`.
:func:`to_project_layout` finds the one whose ``matches`` accepts a loaded
state dict and converts it; a state dict already in this project's names
passes unchanged.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Mapping

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
    sample = ", ".join(sorted(state_dict)[:4])
    raise CheckpointError(
        f"{source}: unrecognised checkpoint layout (keys such as {sample}); known layouts: "
        f"{', '.join(LAYOUTS) or 'none'} and this project's own (backbone.*, sem_seg_head.*)"
    )
