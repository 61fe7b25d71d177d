"""OpenVINO: the ONNX capture converted to OpenVINO IR (`model.xml` + `model.bin`, float32
weights), compiled for the CPU plugin at load time with the precision pinned.

OpenVINO's CPU plugin runs in bf16 by default on CPUs with BF16 support, so every engine sets
``INFERENCE_PRECISION_HINT`` explicitly (f32 for fp32), and dynamic quantization is turned off:
precision never changes silently. INT8 engines are ModelOpt's Q/DQ ONNX of a calibrated model:
OpenVINO runs the quantized convolutions with INT8 kernels and everything else in f32.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..engine.capture import INPUT_NAME, OUTPUT_NAME, capture_onnx, capture_qdq_onnx
from ..engine.graph_parts import LOGITS, exposing, stage_tensors
from ..int8.coverage import LayerPrecisions, openvino_precisions
from ..profiling.layers import CALLS, WARMUP_CALLS
from ..engine.spec import BuildSpec, Precision
from ..profiling.throughput import Requests, Stop
from .base import MODELOPT, Availability, Runtime, TritonTarget
from .settings import Settings

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest

FILES = ("model.xml", "model.bin")  # the IR's graph, which names its weights file


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What an openvino engine's manifest records (``backend_settings``): the CPU plugin's
    ``config``, which pins INFERENCE_PRECISION_HINT to the engine's precision; ``build`` writes
    it, ``load`` reads it once and its runtime compiles the IR with it."""

    config: dict[str, Any]

    @classmethod
    def read(cls, manifest: EngineManifest) -> Recorded:
        config = manifest.backend_settings.get("config")
        if not isinstance(config, dict) or config.get("INFERENCE_PRECISION_HINT") != manifest.precision.openvino:
            raise DenseNetTRTError(
                f"the manifest's backend_settings.config does not pin INFERENCE_PRECISION_HINT to "
                f"{manifest.precision.openvino} for a {manifest.precision} engine; rebuild the engine"
            )
        return cls(config)


def _capabilities() -> list[str]:
    import openvino

    return list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend:
    name = "openvino"
    devices = ("cpu",)
    formats = ("openvino-ir",)
    extra = "openvino"
    settings: type[Settings] = Settings
    int8_placement = MODELOPT

    def available(self) -> Availability:
        missing = [m for m in ("openvino", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(
                False, f"{', '.join(missing)} not installed", "pip install 'densenet-trt[openvino,onnx]'"
            )
        return Availability(True)

    def precisions(self, device: str) -> dict[Precision, str]:
        if device != "cpu":
            return {}
        caps = _capabilities()
        return {
            p: (f"ModelOpt Q/DQ ONNX from `densenet-trt calibrate`; {p.openvino} between the INT8 layers"
                if p is Precision.INT8 else f"INFERENCE_PRECISION_HINT={p.openvino}"
                + (f" (this CPU has native {p.cpu_capability})" if p.cpu_capability else ""))
            for p in Precision
            if self.name in p.backends and (p.cpu_capability is None or p.cpu_capability in caps)
        }

    def io_dtype(self, precision: Precision) -> torch.dtype:
        return torch.float32  # the precision is a compile-time hint; the IR takes float32

    def files(self, fmt: str) -> tuple[str, ...]:
        return FILES

    def versions(self) -> dict[str, str]:
        return {"openvino": importlib.metadata.version("openvino")}

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        import onnx
        import openvino

        onnx_path = folder / "capture.onnx"
        capture = capture_qdq_onnx if spec.precision is Precision.INT8 else capture_onnx
        onnx.save(capture(model, spec.batch, spec.image_size), str(onnx_path))
        ov_model = openvino.convert_model(str(onnx_path))
        onnx_path.unlink()
        shape = [openvino.Dimension(spec.batch.min, spec.batch.max), spec.in_channels,
                 spec.image_size, spec.image_size]
        ov_model.reshape({ov_model.input(0): openvino.PartialShape(shape)})
        openvino.save_model(ov_model, str(folder / FILES[0]), compress_to_fp16=False)
        return dataclasses.asdict(Recorded({
            "INFERENCE_PRECISION_HINT": spec.precision.openvino,
            "PERFORMANCE_HINT": "LATENCY",
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        }))

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        return OpenVinoRuntime(folder, manifest, Recorded.read(manifest))

    def check_compatible(self, manifest: EngineManifest) -> None:
        precision = manifest.precision
        if precision not in self.precisions("cpu"):
            raise DenseNetTRTError(
                f"this engine runs in {precision}, which this CPU cannot do natively "
                f"(it has {', '.join(_capabilities())}); rebuild it with precision={Precision.FP32}"
            )

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """The IR runs on Triton's OpenVINO backend, with the graph's tensor names, the batch an
        explicit -1 dimension (see ``_triton_parameters``)."""
        return TritonTarget(("backend", "openvino"), {f: f for f in FILES}, INPUT_NAME, OUTPUT_NAME, "KIND_CPU",
                            batched=False, parameters=_triton_parameters)


def _triton_parameters(manifest: EngineManifest) -> dict[str, str]:
    """Triton's openvino backend parameters for the engine (its README's "Parameters").

    Batch: with max_batch_size N the backend fixes the IR's batch to N and refuses every other
    batch (measured with Triton 2.51 and OpenVINO 2026.4), so the config has max_batch_size 0,
    the batch a -1 dimension, and ``RESHAPE_IO_LAYERS: YES`` (the IR reshaped to those dims).
    Precision: the backend's one precision parameter is ``HINT_BF16`` (it passes no
    INFERENCE_PRECISION_HINT, and OpenVINO ignores one in the IR's runtime_options); without it
    the CPU plugin's default runs, bf16 on CPUs with native bf16. So a bf16 engine is exported
    with ``HINT_BF16: YES``, and fp32 and int8 engines (f32 pinned) are refused. Threads: the
    engine's as ``INFERENCE_NUM_THREADS``; its ``PERFORMANCE_HINT`` too."""
    if manifest.precision is not Precision.BF16:
        raise DenseNetTRTError(
            f"Triton's openvino backend cannot run this {manifest.precision} engine at its precision: its only "
            f"precision parameter is HINT_BF16, so it runs at the CPU's default, bf16 on CPUs with native bf16 "
            f"(measured 4.3e-3 off for an fp32 engine), not the {manifest.precision.openvino} the engine pins; "
            f"export an onnxruntime engine, or a bf16 openvino engine"
        )
    parameters = {"RESHAPE_IO_LAYERS": "YES", "HINT_BF16": "YES"}
    config = manifest.backend_settings.get("config")
    if isinstance(config, dict) and config.get("PERFORMANCE_HINT") in ("LATENCY", "THROUGHPUT"):
        parameters["PERFORMANCE_HINT"] = config["PERFORMANCE_HINT"]
    if manifest.threads:
        parameters["INFERENCE_NUM_THREADS"] = str(manifest.threads)
    return parameters


class OpenVinoRuntime(Runtime):
    """The IR compiled for the CPU plugin with the ``recorded`` config; the compiled models its
    capabilities need (a throughput hint, performance counters, extra outputs) come from ``compile``."""

    def __init__(self, folder: Path, manifest: EngineManifest, recorded: Recorded):
        super().__init__(folder, manifest)
        self.recorded = recorded
        self._request = self.compile(threads=manifest.threads).create_infer_request()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self._request.infer({0: np.ascontiguousarray(x.to("cpu", torch.float32).numpy())})
        return torch.from_numpy(self._request.get_output_tensor(0).data.copy())

    def compile(self, model: Any = None, threads: int | None = None, **config: Any):
        """``model`` (an ``openvino.Model``; default the engine's IR) compiled for the CPU with the
        recorded config, ``threads`` inference threads (None: OpenVINO's choice) and ``config``."""
        import openvino

        recorded = {**self.recorded.config, **config}
        if threads:
            recorded["INFERENCE_NUM_THREADS"] = threads
        return openvino.Core().compile_model(str(self.folder / FILES[0]) if model is None else model, "CPU", recorded)

    def in_flight(self, x: torch.Tensor, requests: int | None, threads: int) -> Requests | str:
        """An ``AsyncInferQueue`` on a second compiled model of the same IR and settings with
        ``PERFORMANCE_HINT=THROUGHPUT`` (the engine's own is compiled for LATENCY)."""
        import openvino

        extra = {"PERFORMANCE_HINT_NUM_REQUESTS": requests} if requests else {}
        compiled = self.compile(threads=threads, PERFORMANCE_HINT="THROUGHPUT", **extra)
        n = requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        streams = compiled.get_property("NUM_STREAMS")
        hint = self.recorded.config.get("PERFORMANCE_HINT")
        queue = _Queue(openvino.AsyncInferQueue(compiled, n), np.ascontiguousarray(x.numpy()), n,
                       f"OpenVINO AsyncInferQueue, THROUGHPUT hint, {streams} streams")
        if hint != "THROUGHPUT":
            queue.note = (f"throughput with requests in flight: a second compiled model of the same IR and settings "
                          f"with PERFORMANCE_HINT=THROUGHPUT (the engine's own is compiled for {hint})")
        return queue

    def layer_times(self, x: torch.Tensor, threads: int) -> tuple[str, dict[tuple[str, str], float]] | str:
        """OpenVINO's performance counters: a second compiled model of the same IR and settings
        with ``PERF_COUNT``; each executed node's mean ``real_time``."""
        if self.manifest.device.type != "cpu":
            return super().layer_times(x, threads)
        request = self.compile(threads=threads, PERF_COUNT=True).create_infer_request()
        array = np.ascontiguousarray(x.numpy())
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for call in range(WARMUP_CALLS + CALLS):
            request.infer({0: array})
            if call < WARMUP_CALLS:
                continue
            for info in request.get_profiling_info():
                if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_RUN"):
                    totals[(info.node_name, info.node_type)] += info.real_time.total_seconds() * 1e3 / CALLS
        return "OpenVINO performance counters (PERF_COUNT)", dict(totals)

    def layer_precisions(self) -> LayerPrecisions | str:
        """The layer precisions of the runtime graph of the IR compiled with the recorded config."""
        return openvino_precisions(self.compile().get_runtime_model())

    def exposed(self, stages: list[tuple[str, str]], net: nn.Module, quantized: nn.Module | None,
                progress: Callable[[str], None] = lambda message: None,
                ) -> Callable[[torch.Tensor], dict[str, torch.Tensor]] | str:
        """The IR with each part's last tensor added as an output, compiled like the engine: a
        batch in, the parts' outputs and the logits out. The IR keeps the tensor names of the
        ONNX capture its build converted (float32, or ModelOpt's Q/DQ of ``quantized`` for int8),
        so that capture is made again to find them."""
        import openvino

        progress(exposing(self.manifest.backend, stages))
        m = self.manifest
        capture = (capture_onnx(net, m.batch, m.image_size) if quantized is None
                   else capture_qdq_onnx(quantized, m.batch, m.image_size))
        model = openvino.Core().read_model(str(self.folder / FILES[0]))
        known = {name for op in model.get_ops() for port in op.outputs() for name in port.get_names()}
        tensors = {stage: name for stage, name in stage_tensors(capture, stages).items() if name in known}
        outputs = [model.output(0), *model.add_outputs(list(tensors.values()))]
        tensors = {LOGITS: "", **tensors}
        request = self.compile(model, m.threads).create_infer_request()

        def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
            request.infer({0: np.ascontiguousarray(x.numpy())})
            return {stage: torch.from_numpy(request.get_tensor(out).data.copy()).float()
                    for stage, out in zip(tensors, outputs)}

        return run


class _Queue(Requests):
    """OpenVINO's AsyncInferQueue: ``start_async`` waits for a free request and returns."""

    def __init__(self, queue: Any, array: np.ndarray, requests: int, how: str):
        self.queue, self.array, self.requests, self.how = queue, array, requests, how

    def run(self, stop: Stop) -> tuple[list[float], float]:
        times: list[float] = []
        self.queue.set_callback(lambda request, t: times.append((time.perf_counter_ns() - t) / 1e6))
        started, start = 0, time.perf_counter()
        while not stop(started, time.perf_counter() - start):
            self.queue.start_async({0: self.array}, time.perf_counter_ns())
            started += 1
        self.queue.wait_all()
        return times, time.perf_counter() - start

