"""The backends, and the ``auto`` choice among them.

One backend per file behind the protocol in ``base.py``. Heavy or device-bound libraries
(torch_tensorrt, onnxruntime, openvino) are imported inside the backend that needs them.
"""

from __future__ import annotations

from ..errors import DenseNetTRTError
from ..engine.spec import Precision
from .base import Availability, Backend
from .inductor import InductorBackend
from .onnxruntime import OnnxRuntimeBackend
from .openvino import OpenVinoBackend
from .tensorrt import TensorRTBackend
from ._trt_api import check_dla_batch
from .tensorrt_onnx import OnnxTensorRTBackend
from .torchscript import TorchScriptBackend

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (TensorRTBackend(), OnnxTensorRTBackend(), OnnxRuntimeBackend(), OpenVinoBackend(), InductorBackend(), TorchScriptBackend())
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise DenseNetTRTError(
            f"unknown backend {name!r}; choose auto or one of {', '.join(BACKENDS)}"
        ) from None


# The GPU backends ``auto`` tries first, in this order, and what it says when it picks one.
TENSORRT_FIRST = {
    "tensorrt": "an NVIDIA GPU and torch-tensorrt are present",
    "tensorrt-onnx": "an NVIDIA GPU and TensorRT's Python API are present",
}


def choose_backend(precision: str | Precision) -> tuple[Backend, str, str]:
    """The backend, device and the reason that ``--backend auto`` picks for ``precision``:
    TensorRT where it can (torch-tensorrt, else TensorRT's own ONNX parser), else the first
    installed CPU backend in ``precision.backends`` (fastest first, as measured with
    ``densenet-trt profile``; see docs/benchmarks.md)."""
    precision = Precision.parse(precision)
    not_trt = []
    for name, why in TENSORRT_FIRST.items():
        if name not in precision.backends:
            continue
        trt_state = BACKENDS[name].available()
        if trt_state.ok and precision in BACKENDS[name].precisions("cuda"):
            return BACKENDS[name], "cuda", why + (f" ({'; '.join(not_trt)})" if not_trt else "")
        not_trt.append(f"{name}: {trt_state.reason}" if not trt_state.ok else f"{name} cannot do {precision} here")
    why_not_trt = "; ".join(not_trt)
    skipped = []
    for name in precision.backends:
        backend = BACKENDS[name]
        if "cpu" not in backend.devices:
            continue
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


__all__ = ["Availability", "BACKENDS", "Backend", "check_dla_batch", "choose_backend", "get_backend"]
