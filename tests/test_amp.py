"""The DANet head under bf16 autocast on CPU stays close to float32 / float64 and finite."""
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


def test_head_gradients_under_bf16_autocast_match_float64():
    head = random_head("auto").train()
    features = 3 * torch.randn(2, 64, 9, 11)
    targets = torch.randint(0, 5, (2, 72, 88))

    def gradients(dtype, autocast):
        head.zero_grad()
        head.to(dtype)
        torch.manual_seed(1)  # the same dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, losses = head({"res5": features.to(dtype)}, targets)
        assert all(torch.isfinite(loss) for loss in losses.values())
        sum(losses.values()).backward()
        return torch.cat([p.grad.double().flatten() for p in head.parameters()])

    expected = gradients(torch.float64, autocast=False)
    actual = gradients(torch.float32, autocast=True)
    assert torch.isfinite(actual).all()
    # A dozen bf16 roundings (2**-9 each) between the features and the losses;
    # measured 1.7e-2 (2.2e-2 with the channel energy in bf16).
    assert (actual - expected).norm() / expected.norm() < 3e-2
