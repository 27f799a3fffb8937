"""The dilated ResNet of DANet, built from detectron2's own ResNet stem, stages
and bottleneck blocks.

It differs from detectron2's DeepLab backbone in one respect, the one both
references train with (mmsegmentation's ``contract_dilation=True`` and the
DANet authors' dilated ResNet): the first block of a dilated stage, the one
that would have had the stride, gets half the stage's dilation. With
``RES4_DILATION 2``, ``RES5_DILATION 4`` (output stride 8) the 3x3 convs get

    res2, res3:  1, 1, ...
    res4:        1, 2, 2, ..., 2        (6 blocks in R50, 23 in R101)
    res5:        2, 4, 4

and with ``MODEL.RESNETS.CONTRACT_DILATION False`` res4 2, 2, ... and res5
4, 4, 4 (detectron2's DeepLab). A multi-grid other than [1, 1, 1] replaces the
contraction in res5, as in both references: the blocks get
``RES5_DILATION * RES5_MULTI_GRID``, so the authors' ``--multi-grid
--multi-dilation 4 8 16`` is ``RES5_DILATION 4`` with ``RES5_MULTI_GRID [1, 2, 4]``.
"""
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from detectron2.projects.deeplab.resnet import DeepLabStem

from ..errors import InputError

BLOCKS_PER_STAGE = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STEMS = {"basic": BasicStem, "deeplab": DeepLabStem}


def stage_dilations(num_blocks, dilation, contract=True, multi_grid=None):
    """The dilation of each block's 3x3 conv in a stage of ``num_blocks`` blocks
    (see the module docstring)."""
    if multi_grid is not None and any(g != 1 for g in multi_grid):
        return [dilation * g for g in multi_grid]
    first = dilation // 2 if contract and dilation > 1 else dilation
    return [first] + [dilation] * (num_blocks - 1)


def _check_dilations(res4_dilation, res5_dilation, multi_grid, res5_blocks):
    """An InputError naming the MODEL.RESNETS key when the dilations are not ones this
    backbone builds (res4 1 or 2, res5 the same or twice it) or the multi-grid has
    not one factor per res5 block."""
    if res4_dilation not in (1, 2):
        raise InputError(f"MODEL.RESNETS.RES4_DILATION must be 1 or 2, got {res4_dilation}")
    if res5_dilation not in (res4_dilation, 2 * res4_dilation):
        raise InputError(
            f"MODEL.RESNETS.RES5_DILATION must be RES4_DILATION ({res4_dilation}) or twice it, "
            f"got {res5_dilation}"
        )
    if len(multi_grid) != res5_blocks:
        raise InputError(
            f"MODEL.RESNETS.RES5_MULTI_GRID needs one factor per res5 block ({res5_blocks}), got {multi_grid}"
        )


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg, input_shape):
    """A dilated bottleneck ResNet from ``MODEL.RESNETS`` (DEPTH 50/101/152,
    STEM_TYPE "basic" or "deeplab", RES4/RES5_DILATION, RES5_MULTI_GRID,
    CONTRACT_DILATION), a detectron2 :class:`ResNet`."""
    resnets = cfg.MODEL.RESNETS
    if resnets.DEPTH not in BLOCKS_PER_STAGE:
        raise InputError(f"MODEL.RESNETS.DEPTH must be one of {sorted(BLOCKS_PER_STAGE)}, got {resnets.DEPTH}")
    if resnets.STEM_TYPE not in STEMS:
        raise InputError(f"MODEL.RESNETS.STEM_TYPE must be one of {sorted(STEMS)}, got {resnets.STEM_TYPE!r}")
    num_blocks = BLOCKS_PER_STAGE[resnets.DEPTH]
    _check_dilations(resnets.RES4_DILATION, resnets.RES5_DILATION, resnets.RES5_MULTI_GRID, num_blocks[3])
    stem = STEMS[resnets.STEM_TYPE](
        in_channels=input_shape.channels, out_channels=resnets.STEM_OUT_CHANNELS, norm=resnets.NORM
    )
    last_stage = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in resnets.OUT_FEATURES)
    dilations = {2: 1, 3: 1, 4: resnets.RES4_DILATION, 5: resnets.RES5_DILATION}
    in_channels = resnets.STEM_OUT_CHANNELS
    out_channels = resnets.RES2_OUT_CHANNELS
    bottleneck_channels = resnets.NUM_GROUPS * resnets.WIDTH_PER_GROUP
    stages = []
    for stage in range(2, last_stage + 1):
        blocks = num_blocks[stage - 2]
        # A stage halves the resolution unless it is dilated instead (res2 follows the stem's pooling).
        stride = 2 if stage > 2 and dilations[stage] == dilations[stage - 1] else 1
        stages.append(
            ResNet.make_stage(
                BottleneckBlock,
                blocks,
                in_channels=in_channels,
                out_channels=out_channels,
                bottleneck_channels=bottleneck_channels,
                num_groups=resnets.NUM_GROUPS,
                norm=resnets.NORM,
                stride_in_1x1=resnets.STRIDE_IN_1X1,
                stride_per_block=[stride] + [1] * (blocks - 1),
                dilation_per_block=stage_dilations(
                    blocks,
                    dilations[stage],
                    contract=resnets.CONTRACT_DILATION,
                    multi_grid=resnets.RES5_MULTI_GRID if stage == 5 else None,
                ),
            )
        )
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=resnets.OUT_FEATURES).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)
