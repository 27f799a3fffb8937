import pytest
import torch

from helpers import NARROW_RESNET, cpu_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.projects.deeplab.resnet import build_resnet_deeplab_backbone

from danet.errors import InputError
from danet.modeling.backbone import stage_dilations


def _dilations(backbone, stage):
    return [block.conv2.dilation[0] for block in getattr(backbone, stage)]


def test_contracted_dilation_per_block_r101():
    backbone = build_backbone(cpu_cfg("base.yaml", *NARROW_RESNET, "MODEL.RESNETS.DEPTH", 101))
    assert _dilations(backbone, "res3") == [1] * 4
    assert _dilations(backbone, "res4") == [1] + [2] * 22
    assert _dilations(backbone, "res5") == [2, 4, 4]
    assert [backbone.output_shape()[f].stride for f in ("res4", "res5")] == [8, 8]


@pytest.mark.parametrize(
    "opts, res4, res5",
    [
        (["MODEL.RESNETS.CONTRACT_DILATION", False], [2] * 6, [4, 4, 4]),
        # The authors' --multi-grid --multi-dilation 4 8 16: the grid replaces the contraction.
        (["MODEL.RESNETS.RES5_MULTI_GRID", [1, 2, 4]], [1] + [2] * 5, [4, 8, 16]),
        # Output stride 16: only res5 is dilated.
        (["MODEL.RESNETS.RES4_DILATION", 1, "MODEL.RESNETS.RES5_DILATION", 2], [1] * 6, [1, 2, 2]),
    ],
)
def test_dilation_options(opts, res4, res5):
    backbone = build_backbone(cpu_cfg("base.yaml", *NARROW_RESNET, *opts))
    assert (_dilations(backbone, "res4"), _dilations(backbone, "res5")) == (res4, res5)


def test_without_contraction_is_detectron2_deeplab_backbone():
    """Same parameter names (so DeepLab ImageNet weights load) and, with the same
    weights, the same features as detectron2's DeepLab builder."""
    cfg = cpu_cfg("base.yaml", *NARROW_RESNET, "MODEL.RESNETS.CONTRACT_DILATION", False)
    ours = build_backbone(cfg).eval()
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]
    deeplab = build_resnet_deeplab_backbone(cfg, ShapeSpec(channels=3)).eval()
    deeplab.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        expected, got = deeplab(x), ours(x)
    assert torch.equal(got["res5"], expected["res5"])
    # With the contraction the same weights give other features.
    ours_contracted = build_backbone(cpu_cfg("base.yaml", *NARROW_RESNET)).eval()
    ours_contracted.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert not torch.allclose(ours_contracted(x)["res5"], expected["res5"])


def test_stage_dilations():
    assert stage_dilations(4, 1) == [1, 1, 1, 1]
    assert stage_dilations(3, 4, contract=True, multi_grid=[1, 1, 1]) == [2, 4, 4]


@pytest.mark.parametrize(
    "key, value",
    [
        ("MODEL.RESNETS.RES4_DILATION", 4),
        ("MODEL.RESNETS.RES5_DILATION", 8),
        ("MODEL.RESNETS.RES5_MULTI_GRID", [1, 2]),
        ("MODEL.RESNETS.DEPTH", 34),
        ("MODEL.RESNETS.STEM_TYPE", "deep"),
    ],
)
def test_bad_backbone_options_name_the_key(key, value):
    with pytest.raises(InputError, match=key.split(".")[-1]):
        build_backbone(cpu_cfg("base.yaml", *NARROW_RESNET, key, value))
