"""The backends, and the ``auto`` choice among them.

One backend per file behind the protocol in ``base.py``. Heavy or device-bound libraries
(torch_tensorrt, onnxruntime, openvino) are imported inside the backend that needs them.
"""

from __future__ import annotations

from ..errors import DenseNetTRTError
from .base import Availability, Backend, Engine
from .inductor import InductorBackend
from .onnxruntime import OnnxRuntimeBackend
from .openvino import OpenVinoBackend
from .tensorrt import TensorRTBackend
from .torchscript import TorchScriptBackend

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (TensorRTBackend(), OnnxRuntimeBackend(), OpenVinoBackend(), InductorBackend(), TorchScriptBackend())
}

# `auto` on a machine without TensorRT: CPU backends fastest first, per precision, as measured
# with `densenet-trt profile` on the development machines (densenet121, 224x224; see
# docs/benchmarks.md). ONNX Runtime and OpenVINO fp32 are tied within the noise there; for
# int8 OpenVINO ran ModelOpt's Q/DQ graph 5.6x faster than ONNX Runtime at batch 1.
CPU_PREFERENCE = {
    "fp32": ("onnxruntime", "openvino", "inductor", "torchscript"),
    "bf16": ("openvino", "inductor", "torchscript"),
    "fp16": ("openvino",),
    "int8": ("openvino", "onnxruntime"),
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise DenseNetTRTError(
            f"unknown backend {name!r}; choose auto or one of {', '.join(BACKENDS)}"
        ) from None


def choose_backend(precision: str) -> tuple[Backend, str, str]:
    """The backend, device and the reason that ``--backend auto`` picks for ``precision``."""
    trt = BACKENDS["tensorrt"]
    trt_state = trt.available()
    if trt_state.ok and precision in trt.precisions("cuda"):
        return trt, "cuda", "an NVIDIA GPU and torch-tensorrt are present"
    why_not_trt = trt_state.reason if not trt_state.ok else f"TensorRT cannot do {precision} on this GPU"
    skipped = []
    for name in CPU_PREFERENCE.get(precision, ()):
        backend = BACKENDS[name]
        state = backend.available()
        if state.ok and precision in backend.precisions("cpu"):
            note = f"; faster ones not usable: {', '.join(skipped)}" if skipped else ""
            return backend, "cpu", (
                f"no TensorRT ({why_not_trt}); {name} is the fastest installed CPU backend "
                f"for {precision} on these machines{note}"
            )
        skipped.append(f"{name} ({state.reason if not state.ok else f'no {precision} on this CPU'})")
    detail = f": {', '.join(skipped)}" if skipped else ""
    raise DenseNetTRTError(
        f"no installed backend can build {precision} here (TensorRT: {why_not_trt}){detail}"
    )


__all__ = ["Availability", "BACKENDS", "Backend", "Engine", "choose_backend", "get_backend"]
