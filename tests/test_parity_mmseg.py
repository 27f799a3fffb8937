"""This project's DANet against mmsegmentation 1.2.2's, as a test oracle.

mmseg's DANet is built from the config files in its wheel, given random weights,
non-trivial BN statistics and non-zero attention scales, saved as mmseg saves
checkpoints and loaded here through MODEL.WEIGHTS with the matching
configs/mmseg/ config; both then segment the same image with their own
inference (whole image or sliding window). mmseg lives in .reference/ (``make
reference``), outside the runtime environment.
"""
import copy
import math
import os

import pytest
import torch

from helpers import REPO, load_script
from mmseg_reference import CLASSES, build_mmseg_danet, mmseg, save_as_mmseg  # noqa: F401  (mmseg: a fixture)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from danet.checkpoint import LAYOUTS, CheckpointError, SafeCheckpointer, detect_layout
from danet.config import load_config
from danet.engine import build_inference_model
from danet.modeling import build_test_time_segmentor


@pytest.fixture(scope="module")
def reference(mmseg, tmp_path_factory):
    """``reference(depth, protocol)``: mmseg's DANet (built once per module) and
    its checkpoint saved as mmseg saves them."""
    built = {}

    def get(depth, protocol):
        if (depth, protocol) not in built:
            model, cfg = build_mmseg_danet(mmseg, depth, protocol)
            path = str(tmp_path_factory.mktemp("mmseg") / f"danet_r{depth}_{protocol}.pth")
            save_as_mmseg(model, cfg, path)
            built[depth, protocol] = model, path
        return built[depth, protocol]

    return get


def load_project_model(config, weights, *opts):
    """The model of configs/mmseg/<config> with MODEL.WEIGHTS ``weights``, built
    as train_net.py --eval-only and demo.py build it."""
    cfg = load_config(os.path.join(REPO, "configs", "mmseg", config), ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", *opts])
    return build_test_time_segmentor(cfg, build_inference_model(cfg)), cfg


def mmseg_logits(model, image_rgb, ori_shape, dtype=torch.float32):
    """mmseg's own inference: in float32 its test_step (data preprocessor, BGR input
    as loaded by mmcv); in float64 its predict on its preprocessor's normalisation
    (which casts to float32)."""
    from mmseg.structures import SegDataSample

    sample = SegDataSample(metainfo={"img_shape": tuple(image_rgb.shape[-2:]), "ori_shape": ori_shape})
    with torch.no_grad():
        if dtype == torch.float32:
            (result,) = model.test_step({"inputs": [image_rgb.flip(0)], "data_samples": [sample]})
        else:
            preprocessor = model.data_preprocessor
            normalized = (image_rgb.to(dtype) - preprocessor.mean) / preprocessor.std
            (result,) = model.predict(normalized[None], [sample])
    return result.seg_logits.data


def compare(expected, got):
    relative = ((got - expected).norm() / expected.norm()).item()
    agreement = (got.argmax(0) == expected.argmax(0)).double().mean().item()
    return relative, agreement


def random_image(height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


# (depth, protocol, image size, output size, sliding window (crop, stride) or None)
CASES = [
    (50, "512x1024", (97, 131), (97, 131), None),
    (101, "512x1024", (64, 96), (64, 96), None),
    # Two overlapping windows narrower than the image, and the logits resized back
    # to another size (mmseg's Resize to 2049x1025 and back), with align_corners True.
    (50, "769x769", (97, 131), (90, 140), ((97, 80), (97, 51))),
    (101, "769x769", (57, 75), (57, 75), ((57, 48), (57, 27))),
]


def set_window(model, slide):
    """mmseg's slide protocol with a window smaller than the test images."""
    if slide is not None:
        model.test_cfg.update(crop_size=slide[0], stride=slide[1])
    return [] if slide is None else ["TEST.SLIDING_WINDOW.CROP_SIZE", str(slide[0]), "TEST.SLIDING_WINDOW.STRIDE", str(slide[1])]


@pytest.mark.parametrize("depth, protocol, size, out_size, slide", CASES)
def test_logits_match_mmseg(reference, depth, protocol, size, out_size, slide):
    mmseg_model, weights = reference(depth, protocol)
    opts = set_window(mmseg_model, slide)
    model, cfg = load_project_model(f"danet_r{depth}-d8_{protocol}_40k_cityscapes.yaml", weights, *opts)
    assert (cfg.TEST.SLIDING_WINDOW.ENABLED, cfg.MODEL.DANET.ALIGN_CORNERS) == (slide is not None,) * 2

    image = random_image(*size, seed=depth)
    expected = mmseg_logits(mmseg_model, image, out_size)
    with torch.no_grad():
        got = model([{"image": image, "height": out_size[0], "width": out_size[1]}])[0]["sem_seg"]
    assert got.shape == expected.shape == (CLASSES, *out_size)
    relative, agreement = compare(expected, got)
    print(f"R{depth} {protocol} {size}->{out_size}: relative error {relative:.2e}, argmax agreement {agreement:.5f}")
    assert relative <= 1e-4 and agreement >= 0.999


def test_converted_checkpoint_matches_mmseg_in_detectron2s_checkpointer(reference, tmp_path):
    """tools/convert_weights.py's file, loaded by detectron2's own DetectionCheckpointer."""
    mmseg_model, weights = reference(50, "512x1024")
    converted = str(tmp_path / "converted.pth")
    load_script("tools/convert_weights.py").main([weights, converted, "--from", "mmseg"])
    cfg = load_config(os.path.join(REPO, "configs", "mmseg", "danet_r50-d8_512x1024_40k_cityscapes.yaml"), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    incompatible = DetectionCheckpointer(model).load(converted)
    assert not incompatible or not (incompatible.get("missing_keys") or incompatible.get("unexpected_keys"))
    image = random_image(61, 83, seed=3)
    expected = mmseg_logits(mmseg_model, image, (61, 83))
    with torch.no_grad():
        got = model([{"image": image, "height": 61, "width": 83}])[0]["sem_seg"]
    relative, agreement = compare(expected, got)
    assert relative <= 1e-4 and agreement >= 0.999


def test_float64_logits_match_mmseg(reference):
    mmseg_model, weights = reference(50, "769x769")
    mmseg_model = copy.deepcopy(mmseg_model).double()
    opts = set_window(mmseg_model, ((45, 40), (45, 21)))
    model, _ = load_project_model("danet_r50-d8_769x769_40k_cityscapes.yaml", weights, *opts)
    model.double()
    image = random_image(45, 61, seed=7)
    expected = mmseg_logits(mmseg_model, image, (45, 61), dtype=torch.float64)
    with torch.no_grad():
        got = model([{"image": image.double(), "height": 45, "width": 61}])[0]["sem_seg"]
    relative, agreement = compare(expected, got)
    print(f"R50 769x769 float64: relative error {relative:.2e}, argmax agreement {agreement:.5f}")
    assert got.dtype == torch.float64 and relative <= 1e-8 and agreement == 1.0


def test_mmseg_checkpoint_converts_every_key(reference):
    state_dict = reference(50, "512x1024")[0].state_dict()
    layout = detect_layout(state_dict)
    converted = layout.convert(state_dict)
    cfg = load_config(os.path.join(REPO, "configs", "mmseg", "danet_r50-d8_512x1024_40k_cityscapes.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    expected = build_model(cfg).state_dict()
    assert layout.name == "mmseg" and len(converted) == len(state_dict)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    gamma = converted["sem_seg_head.position_branch.1.gamma"]
    assert gamma.shape == (1,) and math.isclose(gamma.item(), 0.8, rel_tol=1e-6)


def _v1c_state_dict(mmseg):
    """mmseg's ImageNet ResNet-50-V1c layout: the backbone's keys without prefix, and fc."""
    from mmseg.registry import MODELS

    backbone = MODELS.build(dict(type="ResNetV1c", depth=50, dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1)))
    state_dict = backbone.state_dict()
    state_dict.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    return state_dict


def test_resnet_v1c_backbone_initialises_the_backbone(mmseg, tmp_path):
    state_dict = _v1c_state_dict(mmseg)
    path = str(tmp_path / "resnet50_v1c.pth")
    torch.save({"state_dict": state_dict}, path)
    cfg = load_config(os.path.join(REPO, "configs", "r50.yaml"), ["MODEL.WEIGHTS", path, "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    SafeCheckpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    loaded = model.state_dict()
    assert detect_layout(state_dict).name == "mmseg-resnet-v1c" and not LAYOUTS["mmseg-resnet-v1c"].whole_model
    torch.testing.assert_close(loaded["backbone.stem.conv2.weight"], state_dict["stem.3.weight"])
    torch.testing.assert_close(loaded["backbone.res5.2.conv3.norm.running_var"], state_dict["layer4.2.bn3.running_var"])


def test_unknown_mmseg_key_is_named(reference):
    state_dict = dict(reference(50, "512x1024")[0].state_dict())
    state_dict["decode_head.pam.extra_conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"decode_head\.pam\.extra_conv\.weight"):
        detect_layout(state_dict).convert(state_dict)


def test_mmseg_checkpoint_into_another_model_names_the_keys(reference):
    """An mmseg DANet loaded into a config without the auxiliary head: its
    auxiliary_head.* tensors have nowhere to go."""
    weights = reference(50, "512x1024")[1]
    with pytest.raises(CheckpointError, match=r"not in the model: sem_seg_head\.aux_head\.\S+ \(\+6 in sem_seg_head\.aux_head\)"):
        load_project_model("danet_r50-d8_512x1024_40k_cityscapes.yaml", weights, "MODEL.DANET.AUX.ENABLED", "False")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(REPO, "configs", "mmseg")) if n.endswith("_cityscapes.yaml")))
def test_mmseg_configs_name_their_checkpoint_and_protocol(name):
    """Each config trains from mmseg's ImageNet ResNet-V1c, as that run did, and
    names its trained checkpoint in the evaluation command of its header."""
    path = os.path.join(REPO, "configs", "mmseg", name)
    cfg = load_config(path)
    stem = name[: -len(".yaml")]
    depth, crop, schedule = stem.split("_")[1:4]
    assert f"resnet{depth[1:4].rstrip('-')}_v1c" in cfg.MODEL.WEIGHTS
    with open(path) as f:
        assert f"#     https://download.openmmlab.com/mmsegmentation/v0.5/danet/{stem}/{stem}_" in f.read()
    assert (cfg.MODEL.RESNETS.DEPTH, cfg.SOLVER.MAX_ITER) == (int(depth[1:4].rstrip("-")), int(schedule[:-1]) * 1000)
    sliding = crop == "769x769"
    assert cfg.TEST.SLIDING_WINDOW.ENABLED == cfg.MODEL.DANET.ALIGN_CORNERS == sliding
    assert tuple(cfg.INPUT.CROP.SIZE) == ((769, 769) if sliding else (512, 1024))
    assert (cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, cfg.MODEL.RESNETS.CONTRACT_DILATION) == (64, True)
    assert (cfg.MODEL.DANET.AUX.ENABLED, cfg.MODEL.DANET.AUX.LOSS_WEIGHT) == (True, 0.4)
