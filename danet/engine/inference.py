"""The one way this project builds a model for evaluation and prediction
(``train_net.py --eval-only``, ``demo.py``, ``tools/``): the device is checked
before anything heavy, weights are read by :class:`SafeCheckpointer` (published
layouts converted; every weight of the model required, so a backbone-only or
other-class checkpoint never predicts with a random head), and the model is in
eval mode."""
import numpy as np
import torch

from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint import CheckpointError, SafeCheckpointer
from ..data import build_test_augmentation
from .defaults import adapt_to_device


def build_inference_model(cfg, weights=None, *, resume=False, random_init=False):
    """The model of ``cfg`` in eval mode with trained weights.

    Args:
        weights: a file or URL; default ``cfg.MODEL.WEIGHTS``.
        resume: use ``OUTPUT_DIR/last_checkpoint`` when there is one.
        random_init: no weights at all, for tools whose results do not depend
            on them (parameter and FLOP counts).
    Raises:
        InputError: no CUDA for ``MODEL.DEVICE cuda``; no weights given; weights
            missing, unused or of other shapes.
    """
    cfg = cfg.clone()
    cfg.defrost()
    adapt_to_device(cfg)
    model = build_model(cfg)
    if not random_init:
        checkpointer = SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR, require_all_weights=True)
        weights = cfg.MODEL.WEIGHTS if weights is None else weights
        if resume and checkpointer.has_checkpoint():
            weights = checkpointer.get_checkpoint_file()
        if not weights:
            raise CheckpointError(
                "No weights were given (MODEL.WEIGHTS is empty): set MODEL.WEIGHTS to a trained "
                "checkpoint, a file or URL, to evaluate or predict"
            )
        checkpointer.load(weights, checkpointables=[])
    return model.eval()


class SegmentationPredictor:
    """Logits of one image, as detectron2's DefaultPredictor: the image is
    converted to ``INPUT.FORMAT``, resized by the test loader's augmentation
    (``INPUT.MIN_SIZE_TEST``, ``MAX_SIZE_TEST``) and handed to ``model`` as the
    test loader hands it, a uint8 [3, H, W] tensor, so test-time augmentation
    treats both alike. ``model`` (from :func:`build_inference_model`, maybe
    wrapped for test-time augmentation) resizes its logits back to the
    image's size."""

    def __init__(self, cfg, model):
        self.model = model
        self.input_format = cfg.INPUT.FORMAT
        self.augmentations = T.AugmentationList(build_test_augmentation(cfg))

    @torch.no_grad()
    def __call__(self, rgb_image):
        """[K, H, W] logits of an RGB uint8 image [H, W, 3]."""
        image = rgb_image[:, :, ::-1] if self.input_format == "BGR" else rgb_image
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return self.model([{"image": image, "height": height, "width": width}])[0]["sem_seg"]
