"""DANetSegmentor (danet/modeling/segmentor.py): inference per image, logits
resized straight to the image size."""
import pytest
import torch
from torch.nn import functional as F

from detectron2.modeling import build_model
from helpers import tiny_cfg


def _model(*opts):
    model = build_model(tiny_cfg(*opts)).eval()
    with torch.no_grad():
        # Trained-like attention: the residual scales are learned away from 0.
        model.sem_seg_head.position_branch[1].gamma.fill_(0.7)
        model.sem_seg_head.channel_branch[1].gamma.fill_(0.4)
    return model


def _image(height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


@torch.no_grad()
def test_inference_does_not_depend_on_the_other_images_of_the_batch():
    """Padding a small image to the batch's largest one would let position
    attention attend to the padding (issue 15, item 5)."""
    model = _model()
    small = {"image": _image(41, 57, seed=1), "height": 41, "width": 57}
    large = {"image": _image(72, 96, seed=2), "height": 72, "width": 96}
    alone = model([small])[0]["sem_seg"]
    batched = model([small, large])
    torch.testing.assert_close(batched[0]["sem_seg"], alone, rtol=0, atol=0)
    torch.testing.assert_close(batched[1]["sem_seg"], model([large])[0]["sem_seg"], rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("align_corners", [False, True])
def test_logits_are_resized_straight_to_the_image_then_the_output_size(align_corners):
    model = _model("MODEL.DANET.ALIGN_CORNERS", align_corners)
    image = _image(43, 61, seed=3)  # not a multiple of the stride 8
    normalized = (image - model.pixel_mean) / model.pixel_std
    logits, _ = model.sem_seg_head(model.backbone(normalized[None]))
    assert logits.shape[-2:] == (6, 8)  # the head stops at the feature resolution

    def resize(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)

    got = model([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(got, resize(logits, (43, 61))[0])
    got = model([{"image": image, "height": 60, "width": 90}])[0]["sem_seg"]
    torch.testing.assert_close(got, resize(resize(logits, (43, 61)), (60, 90))[0])


def test_training_losses_resize_to_the_labels_with_align_corners():
    head = _model("MODEL.DANET.ALIGN_CORNERS", True).sem_seg_head
    logits = torch.randn(2, 19, 6, 8)
    targets = torch.randint(0, 19, (2, 43, 61))
    losses = head.losses({"loss_fused": logits}, targets)
    resized = F.interpolate(logits, size=(43, 61), mode="bilinear", align_corners=True)
    torch.testing.assert_close(losses["loss_fused"], F.cross_entropy(resized, targets))
    head.align_corners = False
    assert not torch.allclose(head.losses({"loss_fused": logits}, targets)["loss_fused"], losses["loss_fused"])
