"""The DANet meta-architecture: detectron2's SemanticSegmentor with the
references' inference (mmsegmentation's EncoderDecoder, the authors' test.py).

In inference each image goes through the network on its own: position
attention attends over every position, so the padding of a batch would change
the result of the smaller images. The head's logits, at the feature
resolution, are resized straight to the image size (not upsampled by the
stride and cropped, which differs when the size is not a multiple of 8), then
to the requested output size, both with ``MODEL.DANET.ALIGN_CORNERS``.

The parts chosen by ``MODEL.DANET.MEMORY_SAVING*`` recompute in the backward
(danet/modeling/memory_saving.py) from construction on, wherever the model is
built from a config.
"""
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor

from . import memory_saving


def resize_logits(logits, size, align_corners=False):
    """Bilinear resize of [..., H, W] logits to ``size`` (h, w); unchanged if already that size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    batched = logits if logits.dim() == 4 else logits[None]
    resized = F.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=align_corners)
    return resized if logits.dim() == 4 else resized[0]


@META_ARCH_REGISTRY.register()
class DANetSegmentor(SemanticSegmentor):
    """Training as SemanticSegmentor (same-size crops, nothing to pad); inference
    per image, returning ``[{"sem_seg": logits [K, height, width]}]``.

    Args:
        align_corners: of the logits' resizes in inference.
        checkpointed_parts: names of memory_saving.CHECKPOINT_PARTS that
            recompute in the backward (training only; weights and state_dict
            keys are the same as without).
    """

    @configurable
    def __init__(self, *, align_corners: bool = False, checkpointed_parts=(), **kwargs):
        super().__init__(**kwargs)
        self.align_corners = align_corners
        memory_saving.checkpoint_parts(self, checkpointed_parts)

    @classmethod
    def from_config(cls, cfg):
        return {
            **super().from_config(cfg),
            "align_corners": cfg.MODEL.DANET.ALIGN_CORNERS,
            "checkpointed_parts": memory_saving.checkpointed_parts(cfg),
        }

    def forward(self, batched_inputs):
        if self.training:
            return super().forward(batched_inputs)
        return [{"sem_seg": self.segment(inputs)} for inputs in batched_inputs]

    def segment(self, inputs):
        """Logits [K, height, width] of one input dict ("image", optional "height", "width")."""
        image = inputs["image"].to(self.device)
        image_size = image.shape[-2:]
        features = self.backbone(((image - self.pixel_mean) / self.pixel_std)[None])
        logits, _ = self.sem_seg_head(features)
        logits = resize_logits(logits[0], image_size, self.align_corners)
        out_size = (inputs.get("height", image_size[0]), inputs.get("width", image_size[1]))
        return resize_logits(logits, out_size, self.align_corners)
