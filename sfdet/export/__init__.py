"""Deployment formats of the action detector: one ONNX file (`sfdet export`) and an ONNX Runtime model.

    from sfdet.export import export_onnx, read_metadata, OnnxActionModel
    result = export_onnx(model, "model.onnx", label_map=..., recipe=...)   # the BN-folded inference form
    ort_model = OnnxActionModel("model.onnx")                                # same call as the torch model
    scores = ort_model([slow, fast], boxes)                                  # (K, num_classes) probabilities

`onnx` and `onnxruntime` are optional (`pip install 'sfdet[onnx]'`); without them every
entry point raises one `SfdetError` line saying so (`require_onnx`).
"""

from __future__ import annotations

__all__ = ["export_onnx", "read_metadata", "OnnxActionModel", "require_onnx", "INSTALL_HINT"]


def __getattr__(name: str):
    if name in ("export_onnx", "read_metadata", "require_onnx", "INSTALL_HINT", "OnnxMetadata"):
        from sfdet.export import onnx as _onnx

        return getattr(_onnx, name)
    if name in ("OnnxActionModel", "load_onnx_model"):
        from sfdet.export import onnx_runtime

        return getattr(onnx_runtime, name)
    raise AttributeError(f"module 'sfdet.export' has no attribute {name!r}")
