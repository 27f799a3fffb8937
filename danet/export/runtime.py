"""Run an exported model (ONNX Runtime or TorchScript) the way demo.py runs the
PyTorch one: resize to the test size, segment the whole image or window by
window, resize the logits back to the image size, each step as the PyTorch
inference does it, with the settings model.json recorded."""
import json
import os

import numpy as np
import torch

from ..data.resize import Rescale
from ..errors import InputError, MissingInputError
from ..modeling.segmentor import resize_logits
from ..modeling.test_time_augmentation import sliding_window_logits
from .exporter import EXPORT_FORMATS, INPUT_NAME, metadata_path

# What the runner reads from model.json; an export of an earlier release may lack some.
REQUIRED_METADATA = ("format", "input", "num_classes", "class_names", "class_colors", "test_size", "sliding_window",
                     "align_corners")  # fmt: skip


class ExportedModel:
    """An exported model file and its model.json; calling it maps an image
    batch [B, 3, H, W] (RGB, the exported input dtype) to float32 logits
    [B, K, H, W] as a torch tensor."""

    def __init__(self, path, backend=None, num_threads=None):
        if not os.path.isfile(path):
            raise MissingInputError(f"--model {path!r} does not exist: export one with tools/export_model.py")
        meta_file = metadata_path(path)
        if not os.path.isfile(meta_file):
            raise MissingInputError(
                f"{meta_file} is missing: keep the model.json written by tools/export_model.py next to {path}"
            )
        try:
            with open(meta_file) as f:
                self.metadata = json.load(f)
        except ValueError as e:  # not JSON, or not UTF-8
            raise InputError(f"{meta_file} is not the JSON tools/export_model.py writes ({e}): export the model again") from e
        missing = [key for key in REQUIRED_METADATA if key not in self.metadata]
        if missing:
            raise InputError(
                f"{meta_file} lacks {', '.join(missing)}: export the model again with tools/export_model.py"
            )
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
    windows moved by ``stride`` (the sliding window of TEST.SLIDING_WINDOW,
    :func:`~danet.modeling.test_time_augmentation.sliding_window_logits`),
    and the logits are resized back to the image size with the exported
    MODEL.DANET.ALIGN_CORNERS, as the segmentor does.
    """
    test_size = model.metadata["test_size"]
    resize = Rescale((test_size["max"], test_size["min"]))  # as build_test_augmentation
    resized = resize.get_transform(image).apply_image(image).transpose(2, 0, 1)
    logits = sliding_window_logits(resized, lambda crop: model(crop[None])[0], window, stride)
    return resize_logits(logits, image.shape[:2], model.metadata["align_corners"])
