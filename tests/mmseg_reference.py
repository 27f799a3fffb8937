"""mmsegmentation 1.2.2 as a test oracle: its import, its DANet built from its
own config files and given the weights of a trained model, and its checkpoints.

mmseg lives in .reference/ (``make reference``), outside the runtime
environment; the tests that use it import the ``mmseg`` fixture from here.
"""
import os
import sys

import pytest
import torch

from helpers import REPO

REFERENCE_DIR = os.path.join(REPO, ".reference")
# mmseg's Cityscapes configs (in its wheel) of each configs/mmseg/ protocol.
MMSEG_CONFIGS = {"512x1024": "cityscapes-512x1024", "769x769": "cityscapes-769x769"}
CLASSES = 19


@pytest.fixture(scope="module")
def mmseg():
    """mmseg with a stand-in for mmcv.ops (compiled extensions DANet does not use)."""
    if not os.path.isdir(os.path.join(REFERENCE_DIR, "mmseg")):
        message = f"mmsegmentation is not installed in {REFERENCE_DIR}: run `make reference`"
        if os.environ.get("DANET_REQUIRE_REFERENCE"):
            pytest.fail(message)
        pytest.skip(message)
    sys.path.insert(0, REFERENCE_DIR)
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    import mmcv_ops

    sys.modules["mmcv.ops"] = mmcv_ops
    import mmseg.models  # noqa: F401  (registers mmseg's models)
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    return sys.modules["mmseg"]


def mmseg_danet_config(mmseg, depth, protocol, options=None):
    """mmseg's own config of DANet-R<depth> for ``protocol``, without its
    ImageNet download, changed by ``options`` ({"model.decode_head.channels": 64, ...})."""
    from mmengine.config import Config

    name = f"danet_r{depth}-d8_4xb2-40k_{MMSEG_CONFIGS[protocol]}.py"
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", "danet", name))
    cfg.model.pretrained = None
    cfg.merge_from_dict(options or {})
    return cfg


def build_mmseg_danet(mmseg, depth, protocol, options=None):
    """mmseg's DANet from its own config (see mmseg_danet_config), in eval mode,
    initialised as mmseg's runner does (``init_weights``), then with random
    weights as a trained model would have them: BN statistics of real
    activations, affine BN parameters and attention scales away from their init."""
    from mmseg.registry import MODELS

    cfg = mmseg_danet_config(mmseg, depth, protocol, options)
    model = MODELS.build(cfg.model)
    model.init_weights()
    generator = torch.Generator().manual_seed(depth)
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.normal_(0.0, 0.2, generator=generator)
        # Statistics: a cumulative average over one calibration batch, then BN's own momentum again.
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.momentum = None
        model.train()
        images = torch.randn(2, 3, 41, 57, generator=generator)
        features = model.extract_feat(images)
        model.decode_head(features)
        if model.with_auxiliary_head:
            model.auxiliary_head(features)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.decode_head.pam.gamma.scale.fill_(0.8)
        model.decode_head.cam.gamma.scale.fill_(0.3)
    return model.eval(), cfg


def save_as_mmseg(model, cfg, path):
    """What mmseg's CheckpointHook writes: meta (plain values) and the state dict."""
    meta = {"mmseg_version": "1.2.2", "config": cfg.pretty_text, "iter": 40000, "dataset_meta": {"classes": ["x"] * CLASSES}}
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path)
