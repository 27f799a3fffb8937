"""Run an exported model (ONNX Runtime or TorchScript) the way demo.py runs the
PyTorch one: resize to the test size, segment the whole image or window by
window, resize the logits back to the image size."""
import json
import os

import numpy as np
import torch
from torch.nn import functional as F

from ..data.resize import Rescale
from ..errors import InputError, MissingInputError
from ..modeling.test_time_augmentation import window_starts
from .exporter import EXPORT_FORMATS, INPUT_NAME, metadata_path


class ExportedModel:
    """An exported model file and its model.json; calling it maps an image
    batch [B, 3, H, W] (RGB, the exported input dtype) to float32 logits
    [B, K, H, W] as a torch tensor."""

    def __init__(self, path, backend=None, num_threads=None):
        if not os.path.isfile(path):
            raise MissingInputError(f"--model {path!r} does not exist: export one with tools/export_model.py")
        meta_file = metadata_path(path)
        if not os.path.isfile(meta_file):
            raise MissingInputError(f"{meta_file} is missing: keep the model.json written by tools/export_model.py next to {path}")
        with open(meta_file) as f:
            self.metadata = json.load(f)
        self.backend = backend or self.metadata["format"]
        if self.backend not in EXPORT_FORMATS:
            raise InputError(f"--backend must be one of {', '.join(EXPORT_FORMATS)}, got {self.backend!r}")
        if self.backend != self.metadata["format"]:
            raise InputError(
                f"--backend {self.backend} but {path} is a {self.metadata['format']} export: "
                f"pass --backend {self.metadata['format']} or the other model file"
            )
        self.dtype = np.dtype(self.metadata["input"]["dtype"])
        if self.backend == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = num_threads
            self._session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        else:
            if num_threads:
                torch.set_num_threads(num_threads)
            self._module = torch.jit.load(path, map_location="cpu")

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=self.dtype)
        if self.backend == "onnx":
            return torch.from_numpy(self._session.run(None, {INPUT_NAME: images})[0])
        with torch.no_grad():
            return self._module(torch.from_numpy(images))


def segment_image(model, image, window=None, stride=None):
    """Logits [K, H, W] of one RGB image [H, W, 3] (uint8), as demo.py computes them.

    The image is resized to the exported test size (INPUT.MIN_SIZE_TEST /
    MAX_SIZE_TEST), segmented whole or, when ``window`` (h, w) is given, in
    windows moved by ``stride`` and averaged where they overlap (clipped at the
    border, as TEST.SLIDING_WINDOW does), and the logits are resized back to
    the image size.
    """
    test_size = model.metadata["test_size"]
    resize = Rescale((test_size["max"], test_size["min"]))  # as build_test_augmentation
    resized = resize.get_transform(image).apply_image(image).transpose(2, 0, 1)
    height, width = resized.shape[1:]
    if window is None:
        logits = model(resized[None])[0]
    else:
        logits = None
        for top in window_starts(height, window[0], stride[0]):
            for left in window_starts(width, window[1], stride[1]):
                crop = resized[:, top : top + window[0], left : left + window[1]]
                crop_logits = model(crop[None])[0]
                if logits is None:
                    logits = crop_logits.new_zeros((crop_logits.shape[0], height, width))
                    count = crop_logits.new_zeros((1, height, width))
                logits[:, top : top + window[0], left : left + window[1]] += crop_logits
                count[:, top : top + window[0], left : left + window[1]] += 1
        logits = logits / count
    if (height, width) == image.shape[:2]:
        return logits
    # detectron2's sem_seg_postprocess, as the segmentor applies it.
    return F.interpolate(logits[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
