"""The DANet segmentation head: position and channel attention branches over
the dilated backbone's last feature map, summed and classified."""
from typing import Callable, Dict, Optional, Union

import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from ..errors import InputError
from .attention import ChannelAttention, FeatureSimilarityPositionAttention, PositionAttention


# MODEL.DANET.LOSS_AVERAGE: what each cross-entropy term is averaged over.
LOSS_AVERAGES = ("valid_pixels", "all_pixels")
# MODEL.DANET.HEAD_INIT. The layers start from PyTorch's defaults (the DANet
# authors' head, plain nn.Conv2d and BN); "mmseg" then initialises what
# mmsegmentation's runner does (BaseDecodeHead's init_cfg Normal(std 0.01)
# overrides only the attribute named conv_seg: the fused and the auxiliary
# classifiers, bias 0; ConvModule inits its convs Kaiming-normal, fan_out, ReLU).
# Position and channel classifiers and PAM's query/key/value convs are plain
# nn.Conv2d in mmseg too: PyTorch's defaults in both.
HEAD_INITS = ("mmseg", "pytorch")
MMSEG_CLASSIFIER_STD = 0.01


def conv_norm_relu(in_channels, out_channels, kernel_size, norm, init="mmseg"):
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    if init == "mmseg":
        weight_init.c2_msra_fill(conv)  # mmcv's kaiming_init: normal, fan_out, ReLU gain, bias 0
    return conv


class Classifier(nn.Sequential):
    """Dropout and a 1x1 conv to the classes; with ``init_std`` the conv starts
    from Normal(0, init_std), bias 0. Its own type so that the checkpointer can
    tell the weights that depend on the number of classes from the others."""

    def __init__(self, in_channels, num_classes, dropout, init_std=None):
        conv = nn.Conv2d(in_channels, num_classes, 1)
        if init_std is not None:
            nn.init.normal_(conv.weight, std=init_std)
            nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout), conv)


class AttentionBranch(nn.Sequential):
    """conv-norm-relu reducing the channels, an attention module, conv-norm-relu."""

    def __init__(self, in_channels, channels, attention, norm, init="mmseg"):
        super().__init__(
            conv_norm_relu(in_channels, channels, 3, norm, init),
            attention,
            conv_norm_relu(channels, channels, 3, norm, init),
        )


@SEM_SEG_HEADS_REGISTRY.register()
class DANetHead(nn.Module):
    """DANet head (Fu et al., CVPR 2019).

    In training it returns the losses of the fused, position and channel
    predictions (and of the optional auxiliary FCN head), each resized to the
    labels with ``align_corners`` and averaged over the valid pixels or, with
    ``loss_average="all_pixels"``, over all of them (see ``losses``); in
    inference the fused logits at the feature resolution (DANetSegmentor
    resizes them to the image). ``head_init`` is one of HEAD_INITS.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        ignore_value: int = 255,
        norm: Union[str, Callable] = "BN",
        branch_reduction: int = 4,
        key_reduction: int = 8,
        position_attention: str = "qkv",
        attention_impl: str = "auto",
        dropout: float = 0.1,
        loss_weight: float = 1.0,
        position_loss_weight: float = 1.0,
        channel_loss_weight: float = 1.0,
        aux_in_feature: Optional[str] = None,
        aux_loss_weight: float = 0.0,
        align_corners: bool = False,
        loss_average: str = "valid_pixels",
        head_init: str = "mmseg",
    ):
        super().__init__()
        if loss_average not in LOSS_AVERAGES:
            raise InputError(f"MODEL.DANET.LOSS_AVERAGE must be one of {LOSS_AVERAGES}, got {loss_average!r}")
        if head_init not in HEAD_INITS:
            raise InputError(f"MODEL.DANET.HEAD_INIT must be one of {HEAD_INITS}, got {head_init!r}")
        # mmseg's conv_seg: the fused and the auxiliary classifiers.
        conv_seg_std = MMSEG_CLASSIFIER_STD if head_init == "mmseg" else None
        in_channels = input_shape[in_feature].channels
        channels = in_channels // branch_reduction
        if position_attention == "qkv":
            pam = PositionAttention(channels, channels // key_reduction, impl=attention_impl)
        elif position_attention == "seed":
            pam = FeatureSimilarityPositionAttention(impl=attention_impl)
        else:
            raise InputError(
                f"MODEL.DANET.POSITION_ATTENTION must be 'qkv' or 'seed', got {position_attention!r}"
            )
        self.in_feature = in_feature
        self.align_corners = align_corners
        self.ignore_value = ignore_value
        self.loss_average = loss_average
        self.position_branch = AttentionBranch(in_channels, channels, pam, norm, head_init)
        self.channel_branch = AttentionBranch(in_channels, channels, ChannelAttention(), norm, head_init)
        self.fused_predictor = Classifier(channels, num_classes, dropout, conv_seg_std)
        self.position_predictor = Classifier(channels, num_classes, dropout)
        self.channel_predictor = Classifier(channels, num_classes, dropout)
        self.loss_weights = {
            "loss_fused": loss_weight,
            "loss_position": position_loss_weight,
            "loss_channel": channel_loss_weight,
        }
        self.aux_in_feature = aux_in_feature
        if aux_in_feature is not None:
            aux_in_channels = input_shape[aux_in_feature].channels
            self.aux_head = nn.Sequential(
                conv_norm_relu(aux_in_channels, aux_in_channels // 4, 3, norm, head_init),
                Classifier(aux_in_channels // 4, num_classes, dropout, conv_seg_std),
            )
            self.loss_weights["loss_aux"] = aux_loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape):
        danet = cfg.MODEL.DANET
        head = cfg.MODEL.SEM_SEG_HEAD
        if len(head.IN_FEATURES) != 1:
            raise InputError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES must name one feature for DANet, got {head.IN_FEATURES}"
            )
        return dict(
            input_shape=input_shape,
            in_feature=head.IN_FEATURES[0],
            num_classes=head.NUM_CLASSES,
            ignore_value=head.IGNORE_VALUE,
            norm=head.NORM,
            branch_reduction=danet.BRANCH_REDUCTION,
            key_reduction=danet.KEY_REDUCTION,
            position_attention=danet.POSITION_ATTENTION,
            attention_impl=danet.ATTENTION_IMPL,
            dropout=danet.DROPOUT,
            loss_weight=head.LOSS_WEIGHT,
            position_loss_weight=danet.POSITION_LOSS_WEIGHT,
            channel_loss_weight=danet.CHANNEL_LOSS_WEIGHT,
            aux_in_feature=danet.AUX.IN_FEATURE if danet.AUX.ENABLED else None,
            aux_loss_weight=danet.AUX.LOSS_WEIGHT,
            align_corners=danet.ALIGN_CORNERS,
            loss_average=danet.LOSS_AVERAGE,
            head_init=danet.HEAD_INIT,
        )

    def forward(self, features, targets=None):
        """
        Returns:
            In training, (None, dict of weighted losses); in inference, (fused
            logits [B, K, H, W] at the resolution of the input feature, {}).
        """
        x = features[self.in_feature]
        position = self.position_branch(x)
        channel = self.channel_branch(x)
        fused = self.fused_predictor(position + channel)
        if not self.training:
            return fused, {}
        logits = {
            "loss_fused": fused,
            "loss_position": self.position_predictor(position),
            "loss_channel": self.channel_predictor(channel),
        }
        if self.aux_in_feature is not None:
            logits["loss_aux"] = self.aux_head(features[self.aux_in_feature])
        return None, self.losses(logits, targets)

    def losses(self, logits, targets):
        """The weighted cross-entropy of each of ``logits`` (name -> [B, K, h, w])
        resized to ``targets`` [B, H, W], pixels of ``ignore_value`` excluded.

        "valid_pixels" averages each term over the pixels not ignored (detectron2's
        mean); "all_pixels" sums it over those and divides by all B * H * W pixels
        plus float32's epsilon, exactly as mmsegmentation's CrossEntropyLoss with
        ``avg_non_ignore=False`` (its ``weight_reduce_loss``). The epsilon changes
        the loss by 1.2e-7 / (B * H * W) relative; it is kept so that a float64
        training agrees with mmseg's to rounding (training amplifies differences).
        """
        losses = {}
        for name, prediction in logits.items():
            # Half precision goes to float32 (bilinear interpolation and CE are unstable
            # in it); float32 and float64 stay as they are.
            prediction = F.interpolate(
                prediction.to(torch.promote_types(prediction.dtype, torch.float32)),
                size=targets.shape[-2:],
                mode="bilinear",
                align_corners=self.align_corners,
            )
            if self.loss_average == "all_pixels":
                loss = F.cross_entropy(prediction, targets, ignore_index=self.ignore_value, reduction="sum")
                loss = loss / (targets.numel() + torch.finfo(torch.float32).eps)
            else:
                loss = F.cross_entropy(prediction, targets, ignore_index=self.ignore_value)
            losses[name] = self.loss_weights[name] * loss
        return losses
