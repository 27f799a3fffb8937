"""torchvision's ImageNet ResNets as the backbone: every backbone weight comes
from the file, and the backbone computes what torchvision's ResNet computes."""

import pytest
import torch
import torchvision

from detectron2.modeling import BACKBONE_REGISTRY, build_model

from danet.checkpoint import SafeCheckpointer, read_checkpoint, to_project_names
from helpers import cpu_cfg, http_server, load_script

SEVEN_BY_SEVEN_STEM = [
    "MODEL.RESNETS.STEM_TYPE", "basic",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
    "MODEL.RESNETS.OUT_FEATURES", '["res2", "res3", "res4", "res5"]',
]  # fmt: skip


def torchvision_resnet50(path):
    """A randomly initialised torchvision ResNet-50 with non-trivial BN
    statistics, saved as torchvision publishes its weights (a bare state dict)."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    torch.save(resnet.state_dict(), path)
    return resnet.eval()


def torchvision_features(resnet, image):
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(image))))
    features = {}
    for index in range(1, 5):
        x = getattr(resnet, f"layer{index}")(x)
        features[f"res{index + 1}"] = x
    return features


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("torchvision") / "resnet50.pth"
    resnet = torchvision_resnet50(path)
    model = build_model(cpu_cfg("base.yaml", *SEVEN_BY_SEVEN_STEM)).eval()
    SafeCheckpointer(model).load(str(path))
    return path, resnet, model


def test_every_backbone_weight_comes_from_the_file(loaded):
    path, resnet, model = loaded
    converted, layout = to_project_names(read_checkpoint(str(path)), str(path))
    assert layout == "torchvision"
    assert set(converted) == set(model.state_dict()) - {
        k for k in model.state_dict() if not k.startswith("backbone.")
    }
    assert len(converted) == len(resnet.state_dict()) - 2  # all but fc.weight and fc.bias
    for key, tensor in converted.items():
        assert torch.equal(model.state_dict()[key], tensor), key


def test_stem_and_undilated_stages_compute_as_torchvision(loaded):
    _, resnet, model = loaded
    image = torch.randn(1, 3, 67, 91)
    with torch.no_grad():
        ours, theirs = model.backbone(image), torchvision_features(resnet, image)
    for name in ("res2", "res3"):
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.skipif(
    "build_dilated_resnet_backbone" not in BACKBONE_REGISTRY,
    reason="needs build_dilated_resnet_backbone (contracted dilation; parity branch)",
)
def test_dilated_stages_compute_as_torchvision_with_dilation(tmp_path):
    """torchvision's replace_stride_with_dilation gives the first block of a
    dilated stage the previous dilation (res4: 1, 2, 2, ...; res5: 2, 4, 4),
    as MODEL.RESNETS.CONTRACT_DILATION does."""
    path = tmp_path / "resnet50.pth"
    torchvision_resnet50(path)
    resnet = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    resnet.load_state_dict(torch.load(path, weights_only=True))
    cfg = cpu_cfg("base.yaml", *SEVEN_BY_SEVEN_STEM, "MODEL.BACKBONE.NAME", "build_dilated_resnet_backbone")
    model = build_model(cfg).eval()
    SafeCheckpointer(model).load(str(path))
    image = torch.randn(1, 3, 67, 91)
    with torch.no_grad():
        ours, theirs = model.backbone(image), torchvision_features(resnet.eval(), image)
    for name in ("res2", "res3", "res4", "res5"):
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-4, msg=name)


def test_url_weights_are_downloaded_and_converted(loaded, tmp_path, monkeypatch):
    """MODEL.WEIGHTS as a URL (served on 127.0.0.1) is downloaded into
    detectron2's cache, then converted the same way."""
    path, _, _ = loaded
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    model = build_model(cpu_cfg("base.yaml", *SEVEN_BY_SEVEN_STEM))
    with http_server() as server:
        url = server.serve("/models/resnet50.pth", path.read_bytes())
        SafeCheckpointer(model).load(url)
    assert (tmp_path / "cache" / "models" / "resnet50.pth").is_file()
    assert torch.equal(
        model.state_dict()["backbone.res5.2.conv3.norm.running_var"],
        torch.load(path, weights_only=True)["layer4.2.bn3.running_var"],
    )


def test_convert_tool_reports_the_backbone_and_what_it_left_out(loaded, tmp_path, capsys):
    convert_weights = load_script("tools/convert_weights.py")
    path, resnet, _ = loaded
    convert_weights.main([str(path), str(tmp_path / "r50.pth"), "--from", "torchvision"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: torchvision's layout"
    assert "  backbone.stem: 6 tensors" in out  # conv1, bn1 (5)
    assert out[-3].startswith("  left out: 2 tensors") and "a backbone to train from" in out[-2]
    assert out[-1] == f"Wrote {tmp_path / 'r50.pth'}: {len(resnet.state_dict()) - 2} tensors"
