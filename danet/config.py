"""Config defaults for DANet; every option lives under ``MODEL.DANET``."""
from detectron2.config import CfgNode as CN
from detectron2.projects.deeplab import add_deeplab_config


def add_danet_config(cfg):
    """Add DANet options (and the DeepLab backbone options it reuses) to ``cfg``."""
    add_deeplab_config(cfg)
    # The DeepLab defaults turn on multi-grid and hard-pixel mining; DANet uses neither.
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"

    cfg.MODEL.DANET = CN()
    # Each branch reduces the backbone's channels by this factor (2048 -> 512).
    cfg.MODEL.DANET.BRANCH_REDUCTION = 4
    # Query/key width of position attention is the branch width divided by this (512 -> 64).
    cfg.MODEL.DANET.KEY_REDUCTION = 8
    # "qkv": the paper's position attention with query/key/value 1x1 convs.
    # "seed": the original project's simplification, attention from the features
    # and their transpose, without the three convs.
    cfg.MODEL.DANET.POSITION_ATTENTION = "qkv"
    # How position attention is computed: "auto" picks the fastest memory-efficient
    # route for the device; "naive" materialises the N x N matrix (for comparison).
    cfg.MODEL.DANET.ATTENTION_IMPL = "auto"
    cfg.MODEL.DANET.DROPOUT = 0.1
    # loss = SEM_SEG_HEAD.LOSS_WEIGHT * CE(fused) + POSITION_LOSS_WEIGHT * CE(position)
    #        + CHANNEL_LOSS_WEIGHT * CE(channel) [+ AUX.LOSS_WEIGHT * CE(aux)]
    cfg.MODEL.DANET.POSITION_LOSS_WEIGHT = 1.0
    cfg.MODEL.DANET.CHANNEL_LOSS_WEIGHT = 1.0

    # Auxiliary FCN head on res4 (the authors' ``--aux``).
    cfg.MODEL.DANET.AUX = CN()
    cfg.MODEL.DANET.AUX.ENABLED = False
    cfg.MODEL.DANET.AUX.IN_FEATURE = "res4"
    cfg.MODEL.DANET.AUX.LOSS_WEIGHT = 0.2

    # ---- Training data pipeline (danet.data.build_train_augmentation) ----
    # How training images are resized before the crop:
    # "shortest_edge": ResizeShortestEdge to INPUT.MIN_SIZE_TRAIN (the original project's 800..960);
    # "scale": ResizeScale, the DANet authors' scaling, the long side becomes
    #          INPUT.SCALE.BASE_SIZE times a ratio drawn from INPUT.SCALE.RANGE.
    cfg.INPUT.RESIZE_TYPE = "shortest_edge"
    cfg.INPUT.SCALE = CN()
    cfg.INPUT.SCALE.BASE_SIZE = 1024
    cfg.INPUT.SCALE.RANGE = (0.5, 2.0)
    # Optional photometric jitter: brightness, contrast, saturation factor ranges.
    cfg.INPUT.COLOR_AUG = CN()
    cfg.INPUT.COLOR_AUG.ENABLED = False
    cfg.INPUT.COLOR_AUG.BRIGHTNESS = (0.8, 1.2)
    cfg.INPUT.COLOR_AUG.CONTRAST = (0.8, 1.2)
    cfg.INPUT.COLOR_AUG.SATURATION = (0.8, 1.2)
