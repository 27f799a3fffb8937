"""Deployment: the model as an ONNX or TorchScript graph (tools/export_model.py)
and a runner for it (tools/segment_exported.py)."""
from .exporter import (
    ATTENTION_IMPL_FOR_FORMAT,
    EXPORT_FORMATS,
    ExportError,
    build_exportable,
    check_exportable,
    export_model,
)
from .module import ExportableSegmentor
from .runtime import ExportedModel, segment_image
