"""The DANet authors' computation (junfu1115/DANet at fc0e063, which cannot be
installed) rebuilt as functions of a state dict in their names: the forward of
their dilated ResNet and DANetHead (encoding/dilated/resnet.py,
encoding/models/danet.py, encoding/nn/attention.py), their loss
(SegmentationMultiLosses, encoding/nn/customize.py), their parameter groups and
poly learning rate (danet/train.py, encoding/utils/lr_scheduler.py).
"""

import torch
from torch.nn import functional as F

# Their ignore_index: labels 255 become -1 (encoding/datasets/cityscapes.py).
IGNORE_INDEX = -1


def batch_norm(state_dict, name, x, training=False):
    """BatchNorm2d (their SyncBN on one device): batch statistics and a running
    average with momentum 0.1 in training, the running statistics in eval."""
    stats = [state_dict[f"{name}.{a}"] for a in ("running_mean", "running_var", "weight", "bias")]
    return F.batch_norm(x, *stats, training=training, momentum=0.1, eps=1e-5)


def backbone_features(state_dict, image, res4_dilations, res5_dilations, training=False):
    """BaseNet.base_forward with the 7x7 stem; Bottleneck: stride in conv2,
    downsample on the first block. {"res2": .., "res5": ..}."""

    def bn(name, x):
        return batch_norm(state_dict, name, x, training)

    x = F.relu(bn("pretrained.bn1", F.conv2d(image, state_dict["pretrained.conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    features = {}
    for layer, stride, dilations in ((1, 1, None), (2, 2, None), (3, 1, res4_dilations), (4, 1, res5_dilations)):
        blocks = len({k.split(".")[2] for k in state_dict if k.startswith(f"pretrained.layer{layer}.")})
        for block in range(blocks):
            name = f"pretrained.layer{layer}.{block}"
            block_stride = stride if block == 0 else 1
            dilation = dilations[block] if dilations else 1
            out = F.relu(bn(f"{name}.bn1", F.conv2d(x, state_dict[f"{name}.conv1.weight"])))
            conv2 = state_dict[f"{name}.conv2.weight"]
            out = F.conv2d(out, conv2, stride=block_stride, padding=dilation, dilation=dilation)
            out = bn(f"{name}.bn3", F.conv2d(F.relu(bn(f"{name}.bn2", out)), state_dict[f"{name}.conv3.weight"]))
            if block == 0:
                shortcut = F.conv2d(x, state_dict[f"{name}.downsample.0.weight"], stride=block_stride)
                x = bn(f"{name}.downsample.1", shortcut)
            x = F.relu(out + x)
        features[f"res{layer + 1}"] = x
    return features


def head_logits(state_dict, x, training=False):
    """DANetHead.forward (dropout left out): the (conv8, conv6, conv7) logits, i.e.
    (fused, position, channel), at the feature resolution."""

    def conv_bn_relu(name, x):
        x = F.conv2d(x, state_dict[f"head.{name}.0.weight"], padding=1)
        return F.relu(batch_norm(state_dict, f"head.{name}.1", x, training))

    def conv1x1(name, x):
        return F.conv2d(x, state_dict[f"{name}.weight"], state_dict[f"{name}.bias"])

    b, c, h, w = x.shape
    feat1 = conv_bn_relu("conv5a", x)
    query = conv1x1("head.sa.query_conv", feat1).view(b, -1, h * w).permute(0, 2, 1)
    key = conv1x1("head.sa.key_conv", feat1).view(b, -1, h * w)
    value = conv1x1("head.sa.value_conv", feat1).view(b, -1, h * w)
    attention = torch.softmax(torch.bmm(query, key), dim=-1)  # [B, N, N]
    pam = torch.bmm(value, attention.permute(0, 2, 1)).view(feat1.shape)
    sa_conv = conv_bn_relu("conv51", state_dict["head.sa.gamma"] * pam + feat1)

    feat2 = conv_bn_relu("conv5c", x)
    flat = feat2.view(b, feat2.shape[1], -1)
    energy = torch.bmm(flat, flat.permute(0, 2, 1))  # [B, C, C]
    attention = torch.softmax(energy.max(-1, keepdim=True)[0].expand_as(energy) - energy, dim=-1)
    cam = torch.bmm(attention, flat).view(feat2.shape)
    sc_conv = conv_bn_relu("conv52", state_dict["head.sc.gamma"] * cam + feat2)
    return (
        conv1x1("head.conv8.1", sa_conv + sc_conv),
        conv1x1("head.conv6.1", sa_conv),
        conv1x1("head.conv7.1", sc_conv),
    )


def danet_outputs(state_dict, image, res4_dilations, res5_dilations, training=False):
    """DANet.forward: the three logits resized to the image with align_corners=True."""
    features = backbone_features(state_dict, image, res4_dilations, res5_dilations, training)
    logits = head_logits(state_dict, features["res5"], training)
    return [F.interpolate(x, image.shape[-2:], mode="bilinear", align_corners=True) for x in logits]


def multi_loss(outputs, target):
    """SegmentationMultiLosses: the sum of the three cross-entropies, each averaged
    over the pixels that are not IGNORE_INDEX. Returns (sum, [each])."""
    losses = [F.cross_entropy(x, target, ignore_index=IGNORE_INDEX) for x in outputs]
    return sum(losses), losses


def parameters(state_dict):
    """The tensors SGD trains: all but BN's running statistics and counters."""
    return {
        k: v for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def sgd(state_dict, lr, momentum, weight_decay):
    """Their optimizer: params_list = [backbone at lr, head at 10 x lr], SGD with
    momentum and weight decay on every parameter."""
    trained = parameters(state_dict)
    groups = [
        {"params": [v for k, v in trained.items() if k.startswith("pretrained.")], "lr": lr},
        {"params": [v for k, v in trained.items() if k.startswith("head.")], "lr": lr * 10},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def set_poly_lr(optimizer, base_lr, iteration, max_iter):
    """LR_Scheduler('poly') called before step ``iteration``: base * (1 - T/N)^0.9
    for the backbone, 10x that for the head."""
    lr = base_lr * pow(1 - iteration / max_iter, 0.9)
    optimizer.param_groups[0]["lr"] = lr
    for group in optimizer.param_groups[1:]:
        group["lr"] = lr * 10
