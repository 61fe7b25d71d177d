"""OpenVINO: the ONNX capture converted to OpenVINO IR (`model.xml` + `model.bin`, float32
weights), compiled for the CPU plugin at load time with the precision pinned.

OpenVINO's CPU plugin runs in bf16 by default on CPUs with BF16 support, so every engine sets
``INFERENCE_PRECISION_HINT`` explicitly (f32 for fp32), and dynamic quantization is turned off:
precision never changes silently. INT8 engines are ModelOpt's Q/DQ ONNX of a calibrated model:
OpenVINO runs the quantized convolutions with INT8 kernels and everything else in f32.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..capture import capture_onnx, capture_qdq_onnx
from ..spec import BuildSpec
from .base import Availability

FILE = "model.xml"
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
# The CPU's OPTIMIZATION_CAPABILITIES entry each reduced precision needs.
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
_NOTES = {"int8": "ModelOpt Q/DQ ONNX from `densenet-trt calibrate`; f32 between the INT8 layers"}


def _capabilities() -> list[str]:
    import openvino

    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend:
    name = "openvino"
    devices = ("cpu",)
    formats = ("openvino-ir",)
    extra = "openvino"
    option_names: tuple[str, ...] = ()

    def available(self) -> Availability:
        missing = [m for m in ("openvino", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(
                False, f"{', '.join(missing)} not installed", "pip install 'densenet-trt[openvino,onnx]'"
            )
        return Availability(True)

    def precisions(self, device: str) -> dict[str, str]:
        if device != "cpu":
            return {}
        caps = _capabilities()
        out = {"fp32": "INFERENCE_PRECISION_HINT=f32"}
        for precision, cap in _CAPABILITY.items():
            if cap in caps:
                out[precision] = _NOTES.get(
                    precision, f"INFERENCE_PRECISION_HINT={HINTS[precision]} (this CPU has native {cap})"
                )
        return out

    def versions(self) -> dict[str, str]:
        return {"openvino": importlib.metadata.version("openvino")}

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        import onnx
        import openvino

        onnx_path = folder / "capture.onnx"
        capture = capture_qdq_onnx if spec.precision == "int8" else capture_onnx
        onnx.save(capture(model, spec.batch, spec.image_size), str(onnx_path))
        ov_model = openvino.convert_model(str(onnx_path))
        onnx_path.unlink()
        shape = [openvino.Dimension(spec.batch.min, spec.batch.max), spec.in_channels,
                 spec.image_size, spec.image_size]
        ov_model.reshape({ov_model.input(0): openvino.PartialShape(shape)})
        openvino.save_model(ov_model, str(folder / FILE), compress_to_fp16=False)
        return {"config": self.config(spec.precision, spec.threads)}

    @staticmethod
    def config(precision: str, threads: int | None) -> dict[str, Any]:
        """The CPU plugin's properties for an engine of ``precision``."""
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return config

    def load(self, folder: Path, manifest: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
        import openvino

        config = self.config(manifest["precision"], manifest.get("threads"))
        compiled = openvino.Core().compile_model(str(folder / FILE), "CPU", config)
        request = compiled.create_infer_request()

        def run(x: torch.Tensor) -> torch.Tensor:
            request.infer({0: np.ascontiguousarray(x.to("cpu", torch.float32).numpy())})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())

        return run

    def check_compatible(self, manifest: dict[str, Any]) -> None:
        precision = manifest["precision"]
        if precision not in self.precisions("cpu"):
            raise DenseNetTRTError(
                f"this engine runs in {precision}, which this CPU cannot do natively "
                f"(it has {', '.join(_capabilities())}); rebuild it with --precision fp32"
            )
