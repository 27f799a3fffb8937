"""torchvision's ImageNet ResNet-50/101 (``torchvision.models.resnet50().state_dict()``)
as this project's backbone.

torchvision's ResNet is the one the DANet authors' dilated ResNet derives from
(same names, stride in the 3x3 conv): :func:`resnet_key` serves both layouts.
It fits ``MODEL.RESNETS.STEM_TYPE "basic"`` (the 7x7 stem),
``STEM_OUT_CHANNELS 64`` and ``STRIDE_IN_1X1 False``; ``fc.*`` (the ImageNet
classifier) is not used.
"""
import re

from .layouts import WeightLayout, register_layout, rename_keys, renamed_module

# torchvision's stages -> detectron2's.
STAGES = {"layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}
# A residual block's layers: torchvision's bn<k> is the norm of conv<k>;
# downsample.0/1 are the projection shortcut's conv and norm.
_BLOCK_KEY = re.compile(r"^(layer[1-4])\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(\w+)$")
# The deep stem of PyTorch-Encoding's ResNet: conv1 = Sequential(conv, bn, relu, conv, bn, relu, conv).
_DEEP_STEM = {
    "conv1.0": "conv1",
    "conv1.1": "conv1.norm",
    "conv1.3": "conv2",
    "conv1.4": "conv2.norm",
    "conv1.6": "conv3",
}


def resnet_key(key, deep_stem=False):
    """The detectron2 ResNet name (under ``backbone.``) of a torchvision-style
    ResNet key, or None if ``key`` is not one. ``bn1`` is the norm of the
    stem's last conv: ``conv1`` for the 7x7 stem, ``conv3`` for the deep stem."""
    block = _BLOCK_KEY.match(key)
    if block:
        stage, index, layer, attr = block.groups()
        layer = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(layer, layer)
        layer = re.sub(r"^bn(\d)$", r"conv\1.norm", layer)
        return f"backbone.{STAGES[stage]}.{index}.{layer}.{attr}"
    module, _, attr = key.rpartition(".")
    if module == "bn1":
        return f"backbone.stem.{'conv3' if deep_stem else 'conv1'}.norm.{attr}"
    if module == "conv1" and not deep_stem:
        return f"backbone.stem.conv1.{attr}"
    stem = renamed_module(key, _DEEP_STEM) if deep_stem else None
    return stem and f"backbone.stem.{stem}"


def _matches(state_dict):
    """torchvision's ResNet names at the top level: ``conv1`` and the downsample of ``layer4``."""
    return "conv1.weight" in state_dict and "layer4.0.downsample.0.weight" in state_dict


def _convert(state_dict):
    return rename_keys(state_dict, resnet_key, "torchvision", dropped=("fc.",))


TORCHVISION_RESNET = register_layout(
    WeightLayout(
        name="torchvision",
        description="torchvision ImageNet ResNet-50/101: 7x7 stem, stride in the 3x3 conv; fc.* not used",
        matches=_matches,
        convert=_convert,
        whole_model=False,
    )
)
