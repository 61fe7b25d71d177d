"""ONNX Runtime: the ONNX capture of the model, run by ONNX Runtime's CPU execution provider
with all graph optimizations, or its CUDA provider where onnxruntime-gpu is installed.

The artifact is a plain `model.onnx` (input ``input``, output ``logits``, dynamic batch) that
any ONNX runtime can load. INT8 engines are the float capture with Q/DQ placed by ONNX Runtime's
own quantizer (QDQ U8S8 per-channel, ort_quantize.py) from the calibration's ONNX Runtime ranges,
run by its integer kernels (QLinearConv, QLinearConcat, ...): ModelOpt's Q/DQ ONNX left almost
every convolution in float here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..capture import INPUT_NAME, OUTPUT_NAME, capture_onnx
from ..ort_quantize import PLACEMENT, prepared_model, qdq_model, settings as placement_settings
from ..spec import BuildSpec, Precision
from .base import Availability

if TYPE_CHECKING:
    from ..manifest import EngineManifest

FILE = "model.onnx"
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
OPTIMIZATION = "ORT_ENABLE_ALL"


def _providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnx"
    option_names: tuple[str, ...] = ()
    int8_placement: str | None = PLACEMENT

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

    def precisions(self, device: str) -> dict[Precision, str]:
        int8 = {Precision.INT8: "ONNX Runtime's own Q/DQ from `densenet-trt calibrate`'s ranges"}
        if device == "cpu":
            return {Precision.FP32: "float32", **int8}
        if device == "cuda" and device in self.devices:
            return {Precision.FP32: "float32", Precision.FP16: "float16 weights and activations", **int8}
        return {}

    def io_dtype(self, precision: Precision) -> torch.dtype:
        return precision.dtype

    def files(self, fmt: str) -> tuple[str, ...]:
        return (FILE,)

    def versions(self) -> dict[str, str]:
        return {m: importlib.metadata.version(m) for m in ("onnx", "onnxruntime")}

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        import onnx

        settings = {"provider": _PROVIDERS[spec.device], "graph_optimization_level": OPTIMIZATION}
        if spec.precision is Precision.INT8:
            quant = spec.int8_ranges
            if quant is None:
                raise DenseNetTRTError("an onnxruntime int8 build needs the calibration's ONNX Runtime ranges")
            prepared = prepared_model(model, spec.batch, spec.image_size)
            proto = qdq_model(prepared, quant.ranges, quant.float_layers, quant.calibration)
            settings.update(placement_settings(quant.calibration))
        else:
            dtype = spec.precision.dtype
            proto = capture_onnx(model.to(dtype=dtype), spec.batch, spec.image_size, dtype=dtype)
        onnx.save(proto, str(folder / FILE))
        return settings

    def load(self, folder: Path, manifest: EngineManifest) -> Callable[[torch.Tensor], torch.Tensor]:
        import onnxruntime

        settings = manifest.backend_settings
        provider, level = settings.get("provider"), settings.get("graph_optimization_level")
        if provider != _PROVIDERS[manifest.device.type] or not isinstance(level, str) or not hasattr(
            onnxruntime.GraphOptimizationLevel, level
        ):
            raise DenseNetTRTError(
                f"the manifest's backend_settings (provider {provider!r}, graph_optimization_level "
                f"{level!r}) are not ONNX Runtime's for a {manifest.device.type} engine; rebuild the engine"
            )
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
        if manifest.threads:
            options.intra_op_num_threads = manifest.threads
        session = onnxruntime.InferenceSession(str(folder / FILE), options, providers=[provider])
        dtype = manifest.precision.dtype

        def run(x: torch.Tensor) -> torch.Tensor:
            feed = {INPUT_NAME: x.to("cpu", dtype).numpy()}
            return torch.from_numpy(session.run([OUTPUT_NAME], feed)[0])

        return run

    def check_compatible(self, manifest: EngineManifest) -> None:
        device = manifest.device.type
        if device not in self.devices:
            raise DenseNetTRTError(
                f"this engine runs on ONNX Runtime's {_PROVIDERS[device]}, which is not installed here"
            )
