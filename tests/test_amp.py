"""The DANet head under bf16 autocast on CPU stays close to float32 and finite."""
import pytest
import torch

from detectron2.layers import ShapeSpec

from danet.modeling import DANetHead


def random_head(impl):
    torch.manual_seed(0)
    head = DANetHead(
        {"res5": ShapeSpec(channels=64, stride=8)},
        in_feature="res5",
        num_classes=5,
        norm="BN",
        attention_impl=impl,
    )
    # Start the attention modules away from the identity, so they count.
    for module in head.modules():
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.8)
    return head


@pytest.mark.parametrize("impl", ["naive", "chunked", "sdpa"])
def test_head_under_bf16_autocast(impl):
    head = random_head(impl).eval()
    features = {"res5": 3 * torch.randn(2, 64, 9, 11)}
    with torch.no_grad():
        expected, _ = head(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = head(features)
    assert torch.isfinite(logits).all()
    error = (logits.float() - expected).norm() / expected.norm()
    # bf16 keeps 8 bits of mantissa (relative rounding 2**-9 per op).
    assert error <= 2e-2


def test_head_trains_under_bf16_autocast():
    head = random_head("auto").train()
    features = {"res5": 3 * torch.randn(2, 64, 9, 11)}
    targets = torch.randint(0, 5, (2, 72, 88))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = head(features, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(loss) for loss in losses.values())
    for name, param in head.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
