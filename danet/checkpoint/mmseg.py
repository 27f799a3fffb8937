"""mmsegmentation's weights: its DANet checkpoints (``{"meta", "state_dict"}``
with ``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``) and the
ImageNet ResNet-V1c backbones its DANet configs start from.

mmseg's ResNetV1c is this project's dilated ResNet with the deep stem
(``STEM_TYPE "deeplab"``, ``STEM_OUT_CHANNELS 64``) and its DAHead is
DANetHead; only the names differ (and the attention scales are 0-d tensors).
"""
import re

from .errors import CheckpointError
from .layouts import WeightLayout, register_layout

# (mmseg name pattern, this project's name); matched against the whole key.
BACKBONE_RULES = (
    (r"stem\.(0|3|6)\.weight", lambda m: f"stem.conv{int(m[1]) // 3 + 1}.weight"),
    (r"stem\.(1|4|7)\.(\w+)", lambda m: f"stem.conv{int(m[1]) // 3 + 1}.norm.{m[2]}"),
    (r"layer(\d)\.(\d+)\.conv(\d)\.weight", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
    (r"layer(\d)\.(\d+)\.bn(\d)\.(\w+)", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
    (r"layer(\d)\.(\d+)\.downsample\.0\.weight", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
    (r"layer(\d)\.(\d+)\.downsample\.1\.(\w+)", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
)
# DAHead: "pam"/"cam" -> the position/channel branch: in_conv, attention, out_conv.
BRANCHES = {"pam": "position", "cam": "channel"}
ATTENTION_CONVS = {"query_project": "query", "key_project": "key", "value_project": "value"}
PREDICTORS = {"conv_seg": "fused_predictor", "pam_conv_seg": "position_predictor", "cam_conv_seg": "channel_predictor"}
HEAD_RULES = (
    (r"(pam|cam)_in_conv\.conv\.weight", lambda m: f"{BRANCHES[m[1]]}_branch.0.weight"),
    (r"(pam|cam)_in_conv\.bn\.(\w+)", lambda m: f"{BRANCHES[m[1]]}_branch.0.norm.{m[2]}"),
    (r"(pam|cam)_out_conv\.conv\.weight", lambda m: f"{BRANCHES[m[1]]}_branch.2.weight"),
    (r"(pam|cam)_out_conv\.bn\.(\w+)", lambda m: f"{BRANCHES[m[1]]}_branch.2.norm.{m[2]}"),
    (r"(pam|cam)\.gamma\.scale", lambda m: f"{BRANCHES[m[1]]}_branch.1.gamma"),
    (r"pam\.(\w+_project)\.(weight|bias)", lambda m: f"position_branch.1.{ATTENTION_CONVS[m[1]]}.{m[2]}"),
    (r"(conv_seg|pam_conv_seg|cam_conv_seg)\.(weight|bias)", lambda m: f"{PREDICTORS[m[1]]}.1.{m[2]}"),
)
# FCNHead with one conv: the auxiliary head on res4.
AUX_RULES = (
    (r"convs\.0\.conv\.weight", lambda m: "0.weight"),
    (r"convs\.0\.bn\.(\w+)", lambda m: f"0.norm.{m[1]}"),
    (r"conv_seg\.(weight|bias)", lambda m: f"1.1.{m[1]}"),
)
# (mmseg prefix, this project's prefix, rules) of a DANet checkpoint.
DANET_PARTS = (
    ("backbone.", "backbone.", BACKBONE_RULES),
    ("decode_head.", "sem_seg_head.", HEAD_RULES),
    ("auxiliary_head.", "sem_seg_head.aux_head.", AUX_RULES),
)


def _rename(key, rules):
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return target(match)
    return None


def _convert(state_dict, parts, skip=()):
    converted, unmapped = {}, []
    for key, value in state_dict.items():
        if key.startswith(skip):
            continue
        for prefix, new_prefix, rules in parts:
            name = _rename(key[len(prefix) :], rules) if key.startswith(prefix) else None
            if name is not None:
                # mmseg's attention scales are 0-d; this project's gammas have shape (1,).
                converted[new_prefix + name] = value.reshape(1) if name.endswith("gamma") else value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise CheckpointError(
            f"mmseg checkpoint: no rule for {len(unmapped)} key(s): {', '.join(unmapped[:8])}"
            f"{' ...' if len(unmapped) > 8 else ''}; only DANet (DAHead + FCNHead on ResNet-V1c) converts"
        )
    return converted


def convert_mmseg_danet(state_dict):
    return _convert(state_dict, DANET_PARTS)


def convert_mmseg_resnet_v1c(state_dict):
    # The ImageNet classifier (fc.*) has no counterpart in a segmentation model.
    return _convert(state_dict, (("", "backbone.", BACKBONE_RULES),), skip=("fc.",))


register_layout(
    WeightLayout(
        name="mmseg",
        description="mmsegmentation DANet checkpoint (backbone.*, decode_head.pam.*, auxiliary_head.*)",
        matches=lambda sd: "backbone.stem.0.weight" in sd and "decode_head.pam.gamma.scale" in sd,
        convert=convert_mmseg_danet,
    )
)
register_layout(
    WeightLayout(
        name="mmseg-resnet-v1c",
        description="mmsegmentation's ImageNet ResNet-V1c backbone (stem.0-7, layer1-4, fc)",
        matches=lambda sd: "stem.0.weight" in sd and "layer1.0.conv1.weight" in sd,
        convert=convert_mmseg_resnet_v1c,
        whole_model=False,
    )
)
