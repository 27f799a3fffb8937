"""The DANet authors' checkpoints (junfu1115/DANet, PyTorch-Encoding layout),
e.g. DANet101.pth.tar for Cityscapes (configs/official/danet101_cityscapes.yaml).

Their model (encoding/models/sseg/danet.py, encoding/nn/da_att.py) is
``pretrained.*``, a dilated ResNet with torchvision's names
(encoding/models/backbone/resnet.py: the 7x7 stem under ``--no-deepstem``,
else a deep stem 64-64-128 as ``conv1.0/.3/.6``), and ``head.*``:

========================  ======================================
theirs                    ours (``sem_seg_head.``)
========================  ======================================
conv5a (conv, BN)         position_branch.0 (conv, norm)
sa (PAM_Module)           position_branch.1 (query, key, value, gamma)
conv51                    position_branch.2
conv5c, sc (CAM), conv52  channel_branch.0, .1, .2
conv6, conv7, conv8       position_, channel_, fused_predictor
========================  ======================================
"""
from .layouts import WeightLayout, register_layout, rename_keys, renamed_module
from .torchvision import resnet_key

_HEAD_MODULES = {
    "conv5a.0": "position_branch.0",
    "conv5a.1": "position_branch.0.norm",
    "sa.query_conv": "position_branch.1.query",
    "sa.key_conv": "position_branch.1.key",
    "sa.value_conv": "position_branch.1.value",
    "sa": "position_branch.1",  # gamma
    "conv51.0": "position_branch.2",
    "conv51.1": "position_branch.2.norm",
    "conv5c.0": "channel_branch.0",
    "conv5c.1": "channel_branch.0.norm",
    "sc": "channel_branch.1",  # gamma
    "conv52.0": "channel_branch.2",
    "conv52.1": "channel_branch.2.norm",
    # conv6/7/8 = Sequential(Dropout2d, Conv2d 1x1), as our classifiers.
    "conv6.1": "position_predictor.1",
    "conv7.1": "channel_predictor.1",
    "conv8.1": "fused_predictor.1",
}


def _matches(state_dict):
    """The authors' layout: a ``pretrained.*`` backbone and the ``head.conv5a`` branch of their DANetHead."""
    return any(k.startswith("pretrained.") for k in state_dict) and any(
        k.startswith("head.conv5a.") for k in state_dict
    )


def _convert(state_dict):
    """The backbone's torchvision-style names renamed by resnet_key (with the deep
    stem when ``pretrained.conv1.0`` exists), the head's by _HEAD_MODULES."""
    deep_stem = "pretrained.conv1.0.weight" in state_dict

    def rename(key):
        if key.startswith("pretrained."):
            return resnet_key(key[len("pretrained.") :], deep_stem)
        head = renamed_module(key[len("head.") :], _HEAD_MODULES) if key.startswith("head.") else None
        return head and f"sem_seg_head.{head}"

    return rename_keys(state_dict, rename, "official")


OFFICIAL_DANET = register_layout(
    WeightLayout(
        name="official",
        description="the DANet authors' checkpoint (junfu1115/DANet: pretrained.* dilated ResNet, head.* DANetHead)",
        matches=_matches,
        convert=_convert,
    )
)
