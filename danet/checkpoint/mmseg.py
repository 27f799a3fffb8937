"""mmsegmentation's weights: its DANet checkpoints (``{"meta", "state_dict"}``
with ``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``) and the
ImageNet ResNet-V1c backbones its DANet configs start from.

mmseg's ResNetV1c is this project's dilated ResNet with the deep stem
(``STEM_TYPE "deeplab"``, ``STEM_OUT_CHANNELS 64``): its stages have
torchvision's names (:func:`resnet_key`), its stem is ``stem.0-7``. Its DAHead
is DANetHead and its FCNHead the auxiliary head; only the names differ (and
the attention scales are 0-d tensors).
"""
from .layouts import WeightLayout, register_layout, rename_keys, renamed_module
from .torchvision import resnet_key

# The deep stem: conv, BN, ReLU three times (32-32-64 in mmseg's ResNetV1c).
_STEM_MODULES = {
    "stem.0": "stem.conv1",
    "stem.1": "stem.conv1.norm",
    "stem.3": "stem.conv2",
    "stem.4": "stem.conv2.norm",
    "stem.6": "stem.conv3",
    "stem.7": "stem.conv3.norm",
}
# DAHead (under ``sem_seg_head.``): "pam"/"cam" are the position/channel branch's
# attention, with in_conv before and out_conv after.
_HEAD_MODULES = {
    "pam_in_conv.conv": "position_branch.0",
    "pam_in_conv.bn": "position_branch.0.norm",
    "pam.query_project": "position_branch.1.query",
    "pam.key_project": "position_branch.1.key",
    "pam.value_project": "position_branch.1.value",
    "pam_out_conv.conv": "position_branch.2",
    "pam_out_conv.bn": "position_branch.2.norm",
    "cam_in_conv.conv": "channel_branch.0",
    "cam_in_conv.bn": "channel_branch.0.norm",
    "cam_out_conv.conv": "channel_branch.2",
    "cam_out_conv.bn": "channel_branch.2.norm",
    "conv_seg": "fused_predictor.1",
    "pam_conv_seg": "position_predictor.1",
    "cam_conv_seg": "channel_predictor.1",
}
_HEAD_SCALES = {"pam.gamma.scale": "position_branch.1.gamma", "cam.gamma.scale": "channel_branch.1.gamma"}
# FCNHead with one conv on res4 (under ``sem_seg_head.aux_head.``).
_AUX_MODULES = {"convs.0.conv": "0", "convs.0.bn": "0.norm", "conv_seg": "1.1"}


def backbone_key(key):
    """This project's name of a ResNetV1c key (without ``backbone.``), or None."""
    if key.startswith("stem."):
        stem = renamed_module(key, _STEM_MODULES)
        return stem and f"backbone.{stem}"
    return resnet_key(key) if key.startswith("layer") else None


def _danet_key(key):
    """This project's name of a key of mmseg's DANet checkpoint (backbone, decode
    head or auxiliary head), or None when no rule covers it."""
    part, _, key = key.partition(".")
    if part == "backbone":
        return backbone_key(key)
    if part == "decode_head":
        head = _HEAD_SCALES.get(key) or renamed_module(key, _HEAD_MODULES)
        return head and f"sem_seg_head.{head}"
    if part == "auxiliary_head":
        aux = renamed_module(key, _AUX_MODULES)
        return aux and f"sem_seg_head.aux_head.{aux}"
    return None


def convert_mmseg_danet(state_dict):
    converted = rename_keys(state_dict, _danet_key, "mmseg")
    # mmseg's attention scales are 0-d; this project's gammas have shape (1,).
    return {key: value.reshape(1) if key.endswith(".gamma") else value for key, value in converted.items()}


def convert_mmseg_resnet_v1c(state_dict):
    # The ImageNet classifier (fc.*) has no counterpart in a segmentation model.
    return rename_keys(state_dict, backbone_key, "mmseg-resnet-v1c", dropped=("fc.",))


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
