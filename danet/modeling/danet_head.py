"""The DANet segmentation head: position and channel attention branches over
the dilated backbone's last feature map, summed and classified."""
from typing import Callable, Dict, Optional, Union

import fvcore.nn.weight_init as weight_init
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from ..errors import InputError
from .attention import ChannelAttention, FeatureSimilarityPositionAttention, PositionAttention


def conv_norm_relu(in_channels, out_channels, kernel_size, norm):
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    weight_init.c2_msra_fill(conv)
    return conv


def classifier(in_channels, num_classes, dropout):
    return nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(in_channels, num_classes, 1))


class AttentionBranch(nn.Sequential):
    """conv-norm-relu reducing the channels, an attention module, conv-norm-relu."""

    def __init__(self, in_channels, channels, attention, norm):
        super().__init__(
            conv_norm_relu(in_channels, channels, 3, norm),
            attention,
            conv_norm_relu(channels, channels, 3, norm),
        )


@SEM_SEG_HEADS_REGISTRY.register()
class DANetHead(nn.Module):
    """DANet head (Fu et al., CVPR 2019).

    In training it returns the losses of the fused, position and channel
    predictions (and of the optional auxiliary FCN head), each resized to the
    labels with ``align_corners``; in inference the fused logits at the feature
    resolution (DANetSegmentor resizes them to the image).
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
    ):
        super().__init__()
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
        self.position_branch = AttentionBranch(in_channels, channels, pam, norm)
        self.channel_branch = AttentionBranch(in_channels, channels, ChannelAttention(), norm)
        self.fused_predictor = classifier(channels, num_classes, dropout)
        self.position_predictor = classifier(channels, num_classes, dropout)
        self.channel_predictor = classifier(channels, num_classes, dropout)
        self.loss_weights = {
            "loss_fused": loss_weight,
            "loss_position": position_loss_weight,
            "loss_channel": channel_loss_weight,
        }
        self.aux_in_feature = aux_in_feature
        if aux_in_feature is not None:
            aux_in_channels = input_shape[aux_in_feature].channels
            self.aux_head = nn.Sequential(
                conv_norm_relu(aux_in_channels, aux_in_channels // 4, 3, norm),
                classifier(aux_in_channels // 4, num_classes, dropout),
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
        losses = {}
        for name, prediction in logits.items():
            # Upsample in float32: bilinear interpolation and CE are unstable in half precision.
            prediction = F.interpolate(
                prediction.float(),
                size=targets.shape[-2:],
                mode="bilinear",
                align_corners=self.align_corners,
            )
            loss = F.cross_entropy(prediction, targets, ignore_index=self.ignore_value)
            losses[name] = self.loss_weights[name] * loss
        return losses
