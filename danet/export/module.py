"""The deployable part of a DANet segmentor as one module: image batch in,
logits at the input size out."""
from torch import nn
from torch.nn import functional as F

from ..modeling.attention import FeatureSimilarityPositionAttention, PositionAttention


class ExportableSegmentor(nn.Module):
    """Backbone + DANet head of a detectron2 SemanticSegmentor in inference,
    with pixel normalisation inside and the logits resized to the input size.

    Input: images [B, 3, H, W] in RGB channel order, uint8 or float with values
    in 0..255; any H and W. Output: float32 logits [B, K, H, W], as the
    segmentor gives for each image before detectron2's postprocessing.
    """

    def __init__(self, model, input_format="RGB", align_corners=False):
        super().__init__()
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head
        self.register_buffer("pixel_mean", model.pixel_mean.detach().clone().view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", model.pixel_std.detach().clone().view(1, -1, 1, 1), False)
        # The model wants its config's INPUT.FORMAT; the graph always takes RGB.
        self.to_bgr = input_format == "BGR"
        self.align_corners = align_corners

    def forward(self, images):
        x = images.float()
        if self.to_bgr:
            x = x.flip(1)
        x = (x - self.pixel_mean) / self.pixel_std
        logits, _ = self.sem_seg_head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)

    def position_attention_modules(self):
        """Every position-attention module of the graph: the paper's and the "seed" form."""
        return [m for m in self.modules() if isinstance(m, (PositionAttention, FeatureSimilarityPositionAttention))]

    def set_attention_impl(self, impl):
        """Route every position attention module through ``impl`` (see
        danet.modeling.attention.ATTENTION_IMPLS)."""
        for module in self.position_attention_modules():
            module.impl = impl
