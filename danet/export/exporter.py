"""Export a DANet config and its weights to ONNX or TorchScript.

Position attention takes a different route per format, chosen by measurement
(docs/DEPLOYMENT.md):

- TorchScript: "sdpa". The traced graph calls scaled_dot_product_attention,
  whose CPU flash kernel never holds the N x N matrix.
- ONNX: "naive" (MatMul, Softmax, MatMul). At opset 18 torch.onnx decomposes
  SDPA into the same MatMul-Softmax form; at opset 23 it emits ONNX's Attention
  operator, but ONNX Runtime's CPU kernel materialises the matrix as well, so
  naive keeps opset 18 and older runtimes. An ONNX graph holds about
  2 x N^2 x 4 bytes at run time; to bound it, run the graph window by window
  (TEST.SLIDING_WINDOW, applied by danet.export.runtime).

"chunked", the training route, is an autograd Function with a Python loop and
cannot be exported.
"""
import json
import os

import torch

from ..data.datasets import class_names_and_colors
from ..engine import build_inference_model
from ..errors import InputError
from ..modeling.test_time_augmentation import check_window
from .module import ExportableSegmentor

EXPORT_FORMATS = ("onnx", "torchscript")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts"}
ATTENTION_IMPL_FOR_FORMAT = {"onnx": "naive", "torchscript": "sdpa"}
EXPORTABLE_ATTENTION_IMPLS = ("naive", "sdpa")
INPUT_DTYPES = {"uint8": torch.uint8, "float32": torch.float32}
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(InputError):
    """A config or option that cannot be exported."""


def check_exportable(cfg, fmt, size=(512, 1024), attention_impl=None, input_dtype="uint8"):
    """Raise ExportError naming the option and what to change."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ExportError(f"--size must be two positive integers H W, got {list(size)}")
    if attention_impl is not None and attention_impl not in EXPORTABLE_ATTENTION_IMPLS:
        raise ExportError(
            f"--attention-impl {attention_impl!r} cannot be exported (the chunked route is an autograd "
            f"Function with a Python loop): use one of {', '.join(EXPORTABLE_ATTENTION_IMPLS)}"
        )
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f"--input-dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    if cfg.TEST.AUG.ENABLED:
        raise ExportError(
            "TEST.AUG.ENABLED is True: multi-scale + flip testing is not part of an exported graph, "
            "which segments one view; set TEST.AUG.ENABLED False"
        )
    if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
        raise ExportError(f"INPUT.FORMAT must be 'RGB' or 'BGR' to export, got {cfg.INPUT.FORMAT!r}")
    if cfg.TEST.SLIDING_WINDOW.ENABLED:  # model.json's window, checked before the export rather than at run time
        check_window(cfg.TEST.SLIDING_WINDOW.CROP_SIZE, cfg.TEST.SLIDING_WINDOW.STRIDE)


def build_exportable(cfg, random_weights=False):
    """The config's model on CPU as an ExportableSegmentor in eval mode, built
    as for inference (:func:`danet.engine.build_inference_model`): every
    weight must come from MODEL.WEIGHTS, and empty weights are refused, unless
    ``random_weights`` (tests and benchmarks, whose results do not depend on
    the weights).

    SyncBN is built as plain BN: in inference both apply the running
    statistics, and their weights have the same names.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    for key in ("RESNETS", "SEM_SEG_HEAD"):
        if cfg.MODEL[key].NORM in ("SyncBN", "naiveSyncBN"):
            cfg.MODEL[key].NORM = "BN"
    model = build_inference_model(cfg, random_init=random_weights)
    if not (hasattr(model, "backbone") and hasattr(model, "sem_seg_head")):
        raise ExportError(
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} has no backbone and sem_seg_head: "
            "export a semantic segmentor (SemanticSegmentor or DANetSegmentor)"
        )
    return ExportableSegmentor(model, cfg.INPUT.FORMAT, cfg.MODEL.DANET.ALIGN_CORNERS).eval()


def export_model(cfg, fmt, output_dir, size=(512, 1024), attention_impl=None, input_dtype="uint8", random_weights=False):
    """Export ``cfg``'s model to ``output_dir``/model.onnx or model.ts, with a
    model.json that describes its input, output and classes and what the
    runner does around the graph to reproduce the PyTorch inference.

    Args:
        size: (H, W) of the example image the graph is traced with; the
            exported graph accepts any batch size, height and width.
        attention_impl: position attention route, default per format
            (ATTENTION_IMPL_FOR_FORMAT).
        random_weights: export randomly initialised weights instead of
            MODEL.WEIGHTS (see :func:`build_exportable`).
    Returns:
        The path of the exported model file.
    """
    check_exportable(cfg, fmt, size, attention_impl, input_dtype)
    attention_impl = attention_impl or ATTENTION_IMPL_FOR_FORMAT[fmt]
    class_names, class_colors = class_names_and_colors(cfg)
    module = build_exportable(cfg, random_weights)
    module.set_attention_impl(attention_impl)
    example = torch.zeros((1, 3, *size), dtype=INPUT_DTYPES[input_dtype])
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    with torch.no_grad():
        if fmt == "onnx":
            _export_onnx(module, example, path)
        else:
            torch.jit.save(torch.jit.trace(module, example), path)
    window = cfg.TEST.SLIDING_WINDOW
    metadata = {
        "format": fmt,
        "file": FILE_NAMES[fmt],
        "input": {"name": INPUT_NAME, "shape": "[batch, 3, height, width]", "channels": "RGB", "dtype": input_dtype},
        "output": {"name": OUTPUT_NAME, "shape": "[batch, num_classes, height, width]", "dtype": "float32"},
        "attention_impl": attention_impl,
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        "class_names": list(class_names),
        "class_colors": class_colors.tolist(),
        # What demo.py does around the model: resize to the test size, optionally
        # slide a window, resize the logits back to the image with align_corners.
        "test_size": {"min": cfg.INPUT.MIN_SIZE_TEST, "max": cfg.INPUT.MAX_SIZE_TEST},
        "sliding_window": (
            {"crop_size": list(window.CROP_SIZE), "stride": list(window.STRIDE)} if window.ENABLED else None
        ),
        "align_corners": cfg.MODEL.DANET.ALIGN_CORNERS,
        "weights": None if random_weights else cfg.MODEL.WEIGHTS,
    }
    with open(metadata_path(path), "w") as f:
        json.dump(metadata, f, indent=2)
    return path


def metadata_path(model_path):
    """The ``model.json`` beside an exported model file."""
    return os.path.join(os.path.dirname(model_path), "model.json")


def _export_onnx(module, example, path):
    """torch.onnx's dynamo export of ``module`` at ONNX_OPSET: batch, height and width
    dynamic, the weights inside the file."""
    dynamic = torch.export.Dim.DYNAMIC
    torch.onnx.export(
        module,
        (example,),
        path,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={INPUT_NAME: {0: dynamic, 2: dynamic, 3: dynamic}},
        opset_version=ONNX_OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
