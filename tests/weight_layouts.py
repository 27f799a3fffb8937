"""Random checkpoints in the layouts of the weights the configs name: their key
names, shapes and file format, written from reading each project's code (not
from this project's converters, which they test).

* torchvision's ImageNet ResNets: torchvision/models/resnet.py, a bare state dict.
* mmsegmentation's ResNet-V1c (``resnet{50,101}_v1c``, open-mmlab://): mmseg's
  ResNetV1c (deep stem 32-32-64 as ``stem.0``-``stem.7``), under "state_dict".
* mmsegmentation's DANet checkpoints: EncoderDecoder with ResNetV1c, DAHead
  (mmseg/models/decode_heads/da_head.py) and FCNHead, {"meta", "state_dict"}.
* The DANet authors' checkpoints (junfu1115/DANet): ResNet, _make_layer and
  Bottleneck (encoding/dilated/resnet.py at fc0e063, encoding/models/backbone/resnet.py
  at HEAD), DANet and DANetHead (encoding/models/danet.py, .../sseg/danet.py),
  PAM_Module and CAM_Module (encoding/nn/attention.py, da_att.py), as their
  train.py saves them ({"epoch", "state_dict", "best_pred"}).
* detectron2's DeepLab ImageNet ResNets (``detectron2://DeepLab/R-{52,103}.pkl``):
  detectron2's ResNet names (``stem.conv1`` .. ``res5.2.conv3``, ``.norm``) with
  the deep stem 64-64-128, numpy arrays in a pickle {"model", "__author__",
  "matching_heuristics"} as detectron2's tools/convert-torchvision-to-d2.py writes
  (assumed: the files cannot be downloaded here).

Values are random with non-trivial BN statistics and affine parameters, so a
tensor loaded into the wrong place changes the result.
"""

import os
import pickle
import re

import torch

# Bottleneck blocks per stage.
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN_ATTRIBUTES = ("weight", "bias", "running_mean", "running_var")


class Shapes(dict):
    """Parameter name -> shape, in the order a module's state dict lists them."""

    def conv(self, name, out_channels, in_channels, k, bias=False):
        self[f"{name}.weight"] = (out_channels, in_channels, k, k)
        if bias:
            self[f"{name}.bias"] = (out_channels,)

    def bn(self, name, channels, batch_counter=True):
        for attr in BN_ATTRIBUTES:
            self[f"{name}.{attr}"] = (channels,)
        if batch_counter:
            self[f"{name}.num_batches_tracked"] = ()


def torchvision_names(layer, block, part):
    """torchvision's (and PyTorch-Encoding's, mmseg's) name of a block's conv<k>,
    bn<k>, downsample conv / norm (``part`` one of conv1..3, norm1..3, shortcut, shortcut_norm)."""
    suffix = {"shortcut": "downsample.0", "shortcut_norm": "downsample.1"}.get(part, part.replace("norm", "bn"))
    return f"layer{layer}.{block}.{suffix}"


def detectron2_names(layer, block, part):
    suffix = {"shortcut_norm": "shortcut.norm"}.get(part, re.sub(r"^norm(\d)$", r"conv\1.norm", part))
    return f"res{layer + 1}.{block}.{suffix}"


def add_bottleneck_stages(
    shapes, depth, in_channels, prefix="", names=torchvision_names, planes=64, batch_counter=True
):
    """The four stages of a bottleneck ResNet (1x1, 3x3, 1x1 to 4x, a projection
    shortcut on each first block); returns the output channels."""
    for layer, blocks in enumerate(BLOCKS[depth], start=1):
        width = planes * 2 ** (layer - 1)
        for block in range(blocks):

            def name(part, layer=layer, block=block):
                return prefix + names(layer, block, part)

            shapes.conv(name("conv1"), width, in_channels, 1)
            shapes.bn(name("norm1"), width, batch_counter)
            shapes.conv(name("conv2"), width, width, 3)
            shapes.bn(name("norm2"), width, batch_counter)
            shapes.conv(name("conv3"), 4 * width, width, 1)
            shapes.bn(name("norm3"), 4 * width, batch_counter)
            if block == 0:
                shapes.conv(name("shortcut"), 4 * width, in_channels, 1)
                shapes.bn(name("shortcut_norm"), 4 * width, batch_counter)
            in_channels = 4 * width
    return in_channels


def random_state_dict(shapes, seed=0):
    """Random tensors of ``shapes``: BN variances and scales in [0.5, 1.5), batch
    counters 1000, everything else normal with a fan-in scale."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state_dict[name] = torch.tensor(1000)
        elif name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
            state_dict[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            fan_in = max(1, torch.Size(shape[1:]).numel())
            state_dict[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state_dict


def torchvision_state_dict(depth, seed=0):
    """``torchvision.models.resnet{depth}().state_dict()``'s layout: the 7x7 stem and fc."""
    shapes = Shapes()
    shapes.conv("conv1", 64, 3, 7)
    shapes.bn("bn1", 64)
    channels = add_bottleneck_stages(shapes, depth, 64)
    shapes["fc.weight"], shapes["fc.bias"] = (1000, channels), (1000,)
    return random_state_dict(shapes, seed)


def add_resnet_v1c(shapes, depth, prefix=""):
    """mmseg's ResNetV1c: stem = Sequential(conv 3x3 3->32, BN, ReLU, conv 32->32, BN, ReLU, conv 32->64, BN, ReLU)."""
    for index, (out_channels, in_channels) in zip((0, 3, 6), ((32, 3), (32, 32), (64, 32))):
        shapes.conv(f"{prefix}stem.{index}", out_channels, in_channels, 3)
        shapes.bn(f"{prefix}stem.{index + 1}", out_channels)
    return add_bottleneck_stages(shapes, depth, 64, prefix)


def mmseg_resnet_v1c_state_dict(depth, seed=0):
    """open-mmlab://resnet{depth}_v1c: the backbone's keys without prefix, and fc."""
    shapes = Shapes()
    channels = add_resnet_v1c(shapes, depth)
    shapes["fc.weight"], shapes["fc.bias"] = (1000, channels), (1000,)
    return random_state_dict(shapes, seed)


def mmseg_danet_state_dict(depth, num_classes, seed=0):
    """mmseg's DANet (_base_/models/danet_r50-d8.py): DAHead(channels 512, pam_channels 64)
    on res5 and FCNHead(channels 256, one conv) on res4."""
    shapes = Shapes()
    channels = add_resnet_v1c(shapes, depth, "backbone.")
    head = channels // 4
    for branch in ("pam", "cam"):
        shapes.conv(f"decode_head.{branch}_in_conv.conv", head, channels, 3)
        shapes.bn(f"decode_head.{branch}_in_conv.bn", head)
        if branch == "pam":  # SelfAttentionBlock: 1x1 convs with bias, no norm; Scale(0) is 0-d
            shapes.conv("decode_head.pam.key_project", head // 8, head, 1, bias=True)
            shapes.conv("decode_head.pam.query_project", head // 8, head, 1, bias=True)
            shapes.conv("decode_head.pam.value_project", head, head, 1, bias=True)
        shapes[f"decode_head.{branch}.gamma.scale"] = ()
        shapes.conv(f"decode_head.{branch}_out_conv.conv", head, head, 3)
        shapes.bn(f"decode_head.{branch}_out_conv.bn", head)
        shapes.conv(f"decode_head.{branch}_conv_seg", num_classes, head, 1, bias=True)
    shapes.conv("decode_head.conv_seg", num_classes, head, 1, bias=True)
    aux = channels // 2 // 4  # res4 (1024 channels) -> 256
    shapes.conv("auxiliary_head.convs.0.conv", aux, channels // 2, 3)
    shapes.bn("auxiliary_head.convs.0.bn", aux)
    shapes.conv("auxiliary_head.conv_seg", num_classes, aux, 1, bias=True)
    return random_state_dict(shapes, seed)


def authors_state_dict(depth=101, planes=64, stem=64, deep_stem=False, num_classes=19, seed=0):
    """The authors' DANet (``get_segmentation_model("danet", backbone=f"resnet{depth}", ...)``):
    ``pretrained.*`` and ``head.*``; ``planes`` and ``stem`` narrow it for computing."""
    shapes = Shapes()
    # ResNet.__init__: the stem; self.inplanes = stem_width*2 if deep_stem else 64.
    if deep_stem:
        shapes.conv("pretrained.conv1.0", stem, 3, 3)
        shapes.bn("pretrained.conv1.1", stem)
        shapes.conv("pretrained.conv1.3", stem, stem, 3)
        shapes.bn("pretrained.conv1.4", stem)
        shapes.conv("pretrained.conv1.6", 2 * stem, stem, 3)
        inplanes = 2 * stem
    else:
        shapes.conv("pretrained.conv1", stem, 3, 7)
        inplanes = stem
    shapes.bn("pretrained.bn1", inplanes)
    # The model sets pretrained.fc = None.
    inplanes = add_bottleneck_stages(shapes, depth, inplanes, "pretrained.", planes=planes)
    # DANetHead(in_channels=2048, out_channels=nclass): inter_channels = in_channels // 4.
    inter = inplanes // 4
    for name, in_channels in (("conv5a", inplanes), ("conv5c", inplanes), ("conv51", inter), ("conv52", inter)):
        shapes.conv(f"head.{name}.0", inter, in_channels, 3)
        shapes.bn(f"head.{name}.1", inter)
    # PAM_Module(in_dim): query/key convs to in_dim // 8, value conv, gamma of shape (1,).
    shapes.conv("head.sa.query_conv", inter // 8, inter, 1, bias=True)
    shapes.conv("head.sa.key_conv", inter // 8, inter, 1, bias=True)
    shapes.conv("head.sa.value_conv", inter, inter, 1, bias=True)
    shapes["head.sa.gamma"] = (1,)
    shapes["head.sc.gamma"] = (1,)  # CAM_Module
    for name in ("conv6", "conv7", "conv8"):  # Sequential(Dropout2d, Conv2d 1x1)
        shapes.conv(f"head.{name}.1", num_classes, inter, 1, bias=True)
    return random_state_dict(shapes, seed)


def deeplab_state_dict(depth, seed=0):
    """detectron2://DeepLab/R-{52,103}.pkl: detectron2's ResNet names, deep stem 64-64-128."""
    shapes = Shapes()
    for index, (out_channels, in_channels) in enumerate(((64, 3), (64, 64), (128, 64)), start=1):
        shapes.conv(f"stem.conv{index}", out_channels, in_channels, 3)
        shapes.bn(f"stem.conv{index}.norm", out_channels, batch_counter=False)
    add_bottleneck_stages(shapes, depth, 128, names=detectron2_names, batch_counter=False)
    return random_state_dict(shapes, seed)


def save_authors_checkpoint(path, state_dict):
    """As their train.py saves it (utils.save_checkpoint of a dict with 'state_dict')."""
    torch.save({"epoch": 240, "state_dict": state_dict, "best_pred": 0.79}, path)
    return str(path)


def save_checkpoint(path, layout, state_dict):
    """``state_dict`` written to ``path`` in the file format of ``layout`` (a key of LAYOUTS)."""
    if layout == "official":
        return save_authors_checkpoint(path, state_dict)
    if layout == "deeplab":
        model = {key: tensor.numpy() for key, tensor in state_dict.items()}
        with open(path, "wb") as f:
            pickle.dump({"model": model, "__author__": "torchvision", "matching_heuristics": True}, f)
    elif layout == "mmseg":
        torch.save({"meta": {"mmseg_version": "1.2.2", "iter": 40000}, "state_dict": state_dict}, path)
    elif layout == "mmseg-resnet-v1c":
        torch.save({"state_dict": state_dict}, path)
    else:
        torch.save(state_dict, path)
    return str(path)


# layout: (pattern of the MODEL.WEIGHTS of configs/ in it, the file suffix detectron2
# reads it by, a function of (the pattern's match, num_classes) giving its state dict)
LAYOUTS = {
    "mmseg-resnet-v1c": (
        r"https://download\.openmmlab\.com/pretrain/third_party/resnet(50|101)_v1c-\w+\.pth",
        ".pth",
        lambda m, num_classes: mmseg_resnet_v1c_state_dict(int(m[1])),
    ),
    "mmseg": (
        r"https://download\.openmmlab\.com/mmsegmentation/v0\.5/danet/danet_r(50|101)-d8_.*\.pth",
        ".pth",
        lambda m, num_classes: mmseg_danet_state_dict(int(m[1]), num_classes),
    ),
    "torchvision": (
        r"https://download\.pytorch\.org/models/resnet(50|101)-\w+\.pth",
        ".pth",
        lambda m, num_classes: torchvision_state_dict(int(m[1])),
    ),
    "official": (
        r"(?:.*/)?DANet(50|101)\.pth\.tar",
        ".pth.tar",
        lambda m, num_classes: authors_state_dict(int(m[1]), num_classes=num_classes),
    ),
    "deeplab": (
        r"detectron2://DeepLab/R-(52|103)\.pkl",
        ".pkl",
        lambda m, num_classes: deeplab_state_dict(int(m[1]) - 2),
    ),
}
# The layouts that hold a whole DANet (classifiers included); the others are ImageNet backbones.
WHOLE_MODELS = ("mmseg", "official")


def synthesise_weights(weights, directory, num_classes):
    """A random checkpoint in the layout of ``weights`` (a MODEL.WEIGHTS of configs/,
    for a model of ``num_classes``) in ``directory``: (its path, the layout's name).
    The same file serves every ``weights`` of the same layout, depth and classes.
    AssertionError for a source no layout here describes, so a new kind of weights gets one."""
    for layout, (pattern, suffix, make) in LAYOUTS.items():
        match = re.fullmatch(pattern, weights)
        if match:
            classes = f"-{num_classes}" if layout in WHOLE_MODELS else ""
            path = os.path.join(directory, f"{layout}-{match[1]}{classes}{suffix}")
            if not os.path.exists(path):
                save_checkpoint(path, layout, make(match, num_classes))
            return path, layout
    raise AssertionError(f"no layout in tests/weight_layouts.py describes MODEL.WEIGHTS {weights!r}")


def evaluation_checkpoint(config_path):
    """The checkpoint a config's header evaluates: the line after its
    ``--eval-only MODEL.WEIGHTS \\`` command; None without one."""
    with open(config_path) as f:
        match = re.search(r"--eval-only MODEL\.WEIGHTS \\\n#\s+(\S+)", f.read())
    return match[1] if match else None
