"""Export a DANet config and its weights to ONNX or TorchScript.

Position attention takes a different route per format, chosen by measurement
(PositionAttention(512) alone on 2 CPU cores, 128x128 positions, N = 16384):

- TorchScript: "sdpa". The traced graph calls scaled_dot_product_attention,
  whose CPU flash kernel never holds the N x N matrix: 129 MB peak against
  2088 MB for "naive".
- ONNX: "naive" (MatMul, Softmax, MatMul). At opset 18 torch.onnx decomposes
  SDPA into the same MatMul-Softmax form; at opset 23 it emits ONNX's Attention
  operator, but ONNX Runtime's CPU kernel materialises the matrix as well
  (1224 MB against 1122 MB for naive), so naive keeps opset 18 and older
  runtimes. An ONNX graph needs about 2 x N^2 x 4 bytes at run time: 8.6 GB
  for a 1024x2048 image (N = 32768). To bound it, run the graph window by
  window (TEST.SLIDING_WINDOW, applied by danet.export.runtime).

"chunked", the training route, is an autograd Function with a Python loop and
cannot be exported.
"""
import json
import logging
import os

import torch

from detectron2.modeling import build_model

from ..checkpoint import SafeCheckpointer
from ..errors import InputError
from .module import ExportableSegmentor

logger = logging.getLogger(__name__)

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


def build_exportable(cfg):
    """The config's model on CPU with MODEL.WEIGHTS loaded, as an
    ExportableSegmentor in eval mode.

    SyncBN is built as plain BN: in inference both apply the running
    statistics, and their weights have the same names.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    for key in ("RESNETS", "SEM_SEG_HEAD"):
        if cfg.MODEL[key].NORM in ("SyncBN", "naiveSyncBN"):
            cfg.MODEL[key].NORM = "BN"
    model = build_model(cfg)
    if not (hasattr(model, "backbone") and hasattr(model, "sem_seg_head")):
        raise ExportError(
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} has no backbone and sem_seg_head: "
            "export a semantic segmentor (SemanticSegmentor or DANetSegmentor)"
        )
    if cfg.MODEL.WEIGHTS:
        SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting random weights.")
    align_corners = cfg.MODEL.DANET.get("ALIGN_CORNERS", False)
    return ExportableSegmentor(model, cfg.INPUT.FORMAT, align_corners).eval()


def export_model(
    cfg, fmt, output_dir, size=(512, 1024), attention_impl=None, input_dtype="uint8", class_names=None, class_colors=None
):
    """Export ``cfg``'s model to ``output_dir``/model.onnx or model.ts, with a
    model.json that describes its input, output and classes.

    Args:
        size: (H, W) of the example image the graph is traced with; the
            exported graph accepts any batch size, height and width.
        attention_impl: position attention route, default per format
            (ATTENTION_IMPL_FOR_FORMAT).
    Returns:
        The path of the exported model file.
    """
    check_exportable(cfg, fmt, size, attention_impl, input_dtype)
    attention_impl = attention_impl or ATTENTION_IMPL_FOR_FORMAT[fmt]
    module = build_exportable(cfg)
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
        "class_names": list(class_names) if class_names is not None else None,
        "class_colors": [list(map(int, c)) for c in class_colors] if class_colors is not None else None,
        # What demo.py does around the model: resize to the test size, optionally slide a window.
        "test_size": {"min": cfg.INPUT.MIN_SIZE_TEST, "max": cfg.INPUT.MAX_SIZE_TEST},
        "sliding_window": (
            {"crop_size": list(window.CROP_SIZE), "stride": list(window.STRIDE)} if window.ENABLED else None
        ),
        "weights": cfg.MODEL.WEIGHTS,
    }
    with open(metadata_path(path), "w") as f:
        json.dump(metadata, f, indent=2)
    return path


def metadata_path(model_path):
    return os.path.join(os.path.dirname(model_path), "model.json")


def _export_onnx(module, example, path):
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
