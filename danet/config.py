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
    # How position attention is computed: "chunked" (query blocks, an autograd
    # Function that recomputes scores in backward) and "sdpa" (PyTorch's fused
    # scaled_dot_product_attention) never hold the N x N matrix; "naive"
    # materialises it (for comparison and debugging); "auto" is chunked on CPU
    # and sdpa on CUDA (see danet.attention.resolve_impl).
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
