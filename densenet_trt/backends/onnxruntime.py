"""ONNX Runtime: the ONNX capture of the model, run by ONNX Runtime's CPU execution provider
with all graph optimizations, or its CUDA provider where onnxruntime-gpu is installed.

The artifact is a plain `model.onnx` (input ``input``, output ``logits``, dynamic batch) that
any ONNX runtime can load. INT8 engines are ModelOpt's Q/DQ ONNX of a calibrated model, run by
ONNX Runtime's QDQ kernels.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..capture import INPUT_NAME, OUTPUT_NAME, capture_onnx, capture_qdq_onnx
from ..spec import BuildSpec
from .base import DTYPES, Availability

FILE = "model.onnx"
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnx"
    option_names: tuple[str, ...] = ()

    @property
    def devices(self) -> tuple[str, ...]:
        if not self.available().ok:
            return ("cpu",)
        return tuple(d for d in ("cuda", "cpu") if _PROVIDERS[d] in _providers())

    def available(self) -> Availability:
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed", "pip install 'densenet-trt[onnx]'")
        return Availability(True)

    def precisions(self, device: str) -> dict[str, str]:
        int8 = {"int8": "ModelOpt Q/DQ ONNX from `densenet-trt calibrate`"}
        if device == "cpu":
            return {"fp32": "float32", **int8}
        if device == "cuda" and device in self.devices:
            return {"fp32": "float32", "fp16": "float16 weights and activations", **int8}
        return {}

    def versions(self) -> dict[str, str]:
        return {m: importlib.metadata.version(m) for m in ("onnx", "onnxruntime")}

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        import onnx

        if spec.precision == "int8":
            proto = capture_qdq_onnx(model, spec.batch, spec.image_size)
        else:
            model = model.to(dtype=DTYPES[spec.precision])
            proto = capture_onnx(model, spec.batch, spec.image_size, dtype=DTYPES[spec.precision])
        onnx.save(proto, str(folder / FILE))
        return {"provider": _PROVIDERS[spec.device], "graph_optimization_level": "ORT_ENABLE_ALL"}

    def load(self, folder: Path, manifest: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = manifest.get("threads")
        if threads:
            options.intra_op_num_threads = threads
        provider = _PROVIDERS[manifest["device"]["type"]]
        session = onnxruntime.InferenceSession(str(folder / FILE), options, providers=[provider])
        dtype = DTYPES[manifest["precision"]]

        def run(x: torch.Tensor) -> torch.Tensor:
            feed = {INPUT_NAME: x.to("cpu", dtype).numpy()}
            return torch.from_numpy(session.run([OUTPUT_NAME], feed)[0])

        return run

    def check_compatible(self, manifest: dict[str, Any]) -> None:
        device = manifest["device"]["type"]
        if device not in self.devices:
            raise DenseNetTRTError(
                f"this engine runs on ONNX Runtime's {_PROVIDERS[device]}, which is not installed here"
            )
