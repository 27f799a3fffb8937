"""The DANet authors' checkpoints (junfu1115/DANet): their key names and shapes
are converted, every key is used, and the converted model computes what theirs does.

Their code cannot be installed here. Their state dicts are written from reading
it (tests/weight_layouts.py), their computation rebuilt from the same files as
functional forwards of the backbone and the head (tests/authors_reference.py).
"""
import os

import pytest
import torch
from torch.nn import functional as F

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from danet.checkpoint import CheckpointError, SafeCheckpointer
from danet.config import load_config
from helpers import CPU_OPTS, REPO, cpu_cfg, load_script
from authors_reference import backbone_features, head_logits
from weight_layouts import authors_state_dict, save_authors_checkpoint

OFFICIAL_CONFIG = os.path.join(REPO, "configs", "official", "danet101_cityscapes.yaml")
# The network of the authors' checkpoint, for configs/base.yaml.
AUTHORS_NETWORK = [
    "MODEL.RESNETS.STEM_TYPE", "basic",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
    "MODEL.RESNETS.RES5_MULTI_GRID", "[1, 2, 4]",
]  # fmt: skip
# A narrow version for computing: their planes 8 instead of 64 (bottleneck width 8, 32 out).
NARROW = [
    "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "32",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
]  # fmt: skip


def authors_model_cfg(*opts):
    return cpu_cfg("base.yaml", *AUTHORS_NETWORK, *opts)


def test_every_key_of_the_authors_danet101_is_used(tmp_path):
    """Full size: the real R101 names and shapes load into the authors' network
    with no key left unmapped, unused or missing (require_all_weights)."""
    state_dict = authors_state_dict(depth=101)
    path = save_authors_checkpoint(tmp_path / "DANet101.pth.tar", state_dict)
    model = build_model(authors_model_cfg("MODEL.RESNETS.DEPTH", 101))
    SafeCheckpointer(model, require_all_weights=True).load(path)
    loaded = model.state_dict()
    assert torch.equal(loaded["sem_seg_head.position_branch.1.gamma"], state_dict["head.sa.gamma"])
    assert torch.equal(loaded["sem_seg_head.channel_branch.1.gamma"], state_dict["head.sc.gamma"])
    assert torch.equal(loaded["sem_seg_head.fused_predictor.1.weight"], state_dict["head.conv8.1.weight"])
    running_var = state_dict["pretrained.layer4.2.bn3.running_var"]
    assert torch.equal(loaded["backbone.res5.2.conv3.norm.running_var"], running_var)
    assert torch.equal(loaded["backbone.stem.conv1.weight"], state_dict["pretrained.conv1.weight"])


def test_deep_stem_checkpoint_fits_the_deeplab_stem(tmp_path):
    state_dict = authors_state_dict(depth=50, planes=8, stem=8, deep_stem=True)
    path = save_authors_checkpoint(tmp_path / "deep.pth.tar", state_dict)
    cfg = cpu_cfg("base.yaml", *NARROW, "MODEL.RESNETS.STEM_TYPE", "deeplab", "MODEL.RESNETS.STEM_OUT_CHANNELS", 16)
    model = build_model(cfg)
    SafeCheckpointer(model, require_all_weights=True).load(path)
    loaded = model.state_dict()
    assert torch.equal(loaded["backbone.stem.conv2.weight"], state_dict["pretrained.conv1.3.weight"])
    assert torch.equal(loaded["backbone.stem.conv3.norm.bias"], state_dict["pretrained.bn1.bias"])


def test_converted_backbone_and_head_compute_as_the_authors(tmp_path):
    torch.manual_seed(0)
    state_dict = authors_state_dict(depth=50, planes=8, stem=16)
    path = save_authors_checkpoint(tmp_path / "narrow.pth.tar", state_dict)
    cfg = authors_model_cfg(*NARROW, "MODEL.RESNETS.OUT_FEATURES", '["res2", "res3", "res4", "res5"]')
    model = build_model(cfg)
    SafeCheckpointer(model, require_all_weights=True).load(path)
    model.eval()
    # Their res4 dilations with --os 8 are 1, 2, 2, ...; res5 with --multi-grid 4 8 16.
    image = torch.randn(1, 3, 61, 83)
    with torch.no_grad():
        ours = model.backbone(image)
        expected = backbone_features(state_dict, image, (1,) + (2,) * 5, (4, 8, 16))
        for name in ("res2", "res3", "res4", "res5"):
            torch.testing.assert_close(ours[name], expected[name], rtol=1e-4, atol=1e-4, msg=name)
        # The head on the same features: their conv8 logits are our fused logits.
        fused = model.sem_seg_head.fused_predictor(
            model.sem_seg_head.position_branch(ours["res5"]) + model.sem_seg_head.channel_branch(ours["res5"])
        )
        torch.testing.assert_close(fused, head_logits(state_dict, ours["res5"])[0], rtol=1e-4, atol=1e-4)


def test_official_config_builds_the_authors_network_and_their_logits(tmp_path):
    """configs/official/danet101_cityscapes.yaml, narrowed: the whole model's
    logits equal their forward (backbone, head, align_corners=True resize)."""
    state_dict = authors_state_dict(depth=101, planes=8, stem=16)
    path = save_authors_checkpoint(tmp_path / "narrow101.pth.tar", state_dict)
    opts = CPU_OPTS + NARROW + ["TEST.AUG.ENABLED", "False", "TEST.SLIDING_WINDOW.ENABLED", "False"]
    model = build_model(load_config(OFFICIAL_CONFIG, opts))
    SafeCheckpointer(model, require_all_weights=True).load(path)
    model.eval()
    res5 = [block.conv2.dilation[0] for block in model.backbone.res5]
    res4 = [block.conv2.dilation[0] for block in model.backbone.res4]
    assert res5 == [4, 8, 16] and res4 == [1] + [2] * 22
    image = torch.randint(0, 256, (3, 61, 83), dtype=torch.uint8).float()
    with torch.no_grad():
        logits = model([{"image": image}])[0]["sem_seg"]
        normalized = ((image - model.pixel_mean) / model.pixel_std)[None]
        features = backbone_features(state_dict, normalized, res4, res5)
        expected = head_logits(state_dict, features["res5"])[0]
        expected = F.interpolate(expected, size=(61, 83), mode="bilinear", align_corners=True)[0]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_convert_tool_writes_what_detectron2_loads(tmp_path, capsys):
    convert_weights = load_script("tools/convert_weights.py")
    state_dict = authors_state_dict(depth=50, planes=8, stem=16)
    src = save_authors_checkpoint(tmp_path / "narrow.pth.tar", state_dict)
    dst = tmp_path / "converted" / "danet.pth"
    convert_weights.main([src, str(dst)])
    out = capsys.readouterr().out
    assert "official" in out and f"Wrote {dst}: {len(state_dict)} tensors" in out
    assert "sem_seg_head.position_branch: 19 tensors" in out  # conv5a + BN (6), PAM (7), conv51 + BN (6)

    cfg = authors_model_cfg(*NARROW)
    by_detectron2, by_weights = build_model(cfg).eval(), build_model(cfg).eval()
    DetectionCheckpointer(by_detectron2).load(str(dst))  # detectron2's own checkpointer
    SafeCheckpointer(by_weights, require_all_weights=True).load(src)  # MODEL.WEIGHTS = the authors' file
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8).float()
    with torch.no_grad():
        expected = by_weights([{"image": image}])[0]["sem_seg"]
        torch.testing.assert_close(by_detectron2([{"image": image}])[0]["sem_seg"], expected, rtol=0, atol=0)

    with pytest.raises(SystemExit, match="convert_weights.py: error: .*no rule for 1 key.*head.extra.weight"):
        state_dict["head.extra.weight"] = torch.zeros(1)
        convert_weights.main([save_authors_checkpoint(tmp_path / "extra.pth.tar", state_dict), str(dst)])
    with pytest.raises(SystemExit, match="unrecognised checkpoint layout .*encoder.weight"):
        torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
        convert_weights.main([str(tmp_path / "other.pth"), str(dst)])
    with pytest.raises(SystemExit) as exit_info:
        convert_weights.main([src, str(dst), "--from", "nope"])
    assert exit_info.value.code == 2  # argparse: choices come from the layout registry


def test_weights_the_config_does_not_use_are_one_line(tmp_path):
    """The original project's position attention has no query/key/value convs:
    the authors' PAM weights would be silently dropped."""
    path = save_authors_checkpoint(tmp_path / "narrow.pth.tar", authors_state_dict(depth=50, planes=8, stem=16))
    model = build_model(authors_model_cfg(*NARROW, "MODEL.DANET.POSITION_ATTENTION", "seed"))
    unused = (
        r"official layout\) does not match this config's model \(not in the model: "
        r"sem_seg_head\.position_branch\.1\.query\.weight \(\+5 in sem_seg_head\.position_branch\)\)"
    )
    with pytest.raises(CheckpointError, match=unused):
        SafeCheckpointer(model).load(path)
