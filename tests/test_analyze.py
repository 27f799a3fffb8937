"""tools/analyze_model.py: parameter and FLOP counts, attention included."""
import importlib.util
import os

import pytest
import torch
from torch.nn import functional as F

import danet.modeling.attention
from detectron2.modeling import build_model

from helpers import BASE_CONFIG, REPO, TINY_MODEL_OPTS, tiny_cfg

TOOL = os.path.join(REPO, "tools", "analyze_model.py")
spec = importlib.util.spec_from_file_location("analyze_model", TOOL)
analyze_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(analyze_model)

# The tiny model at 64 x 96: res5 is 8 x 12 (stride 8) with 512 channels, so
# each attention branch sees N = 96 positions of C = 128 channels, keys of 16.
N, C, CK = 96, 128, 16
# PAM: query/key/value 1x1 convs (biases are not counted), then Q K^T and A V.
POSITION_FLOPS = N * C * (2 * CK + C) + N * N * (CK + C)
# CAM: X X^T and A X.
CHANNEL_FLOPS = 2 * C * C * N


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg()).eval()


def attention_flops(model):
    flops = analyze_model.flop_count_analysis(model, 64, 96)
    by_module = flops.by_module()
    return (
        by_module["model.sem_seg_head.position_branch.1"],
        by_module["model.sem_seg_head.channel_branch.1"],
        flops.unsupported_ops(),
    )


def test_attention_matrix_products_are_counted(model):
    position, channel, unsupported = attention_flops(model)
    assert position == POSITION_FLOPS
    assert channel == CHANNEL_FLOPS
    assert not unsupported


def test_scaled_dot_product_attention_counts_the_same(model, monkeypatch):
    def fused(query, key, value, impl="auto"):
        return F.scaled_dot_product_attention(query, key, value, scale=1.0)

    monkeypatch.setattr(danet.modeling.attention, "position_attention", fused)
    position, _, unsupported = attention_flops(model)
    assert position == POSITION_FLOPS
    assert not unsupported


def test_command_prints_totals(capsys):
    analyze_model.main(["--config-file", BASE_CONFIG, "--size", "64", "96"] + TINY_MODEL_OPTS)
    out = capsys.readouterr().out
    assert out.startswith("Input 64 x 96:")
    total = next(line for line in out.splitlines() if line.startswith("| total"))
    params = sum(p.numel() for p in build_model(tiny_cfg()).parameters())
    assert total.split("|")[2].strip() == f"{params / 1e6:.3f}"
    assert float(total.split("|")[3]) > 0
    assert "Not counted" not in out


def test_bad_size_is_refused(capsys):
    with pytest.raises(SystemExit):
        analyze_model.main(["--config-file", BASE_CONFIG, "--size", "0", "96"])
    assert "--size" in capsys.readouterr().err
