"""ONNX Runtime: the ONNX capture of the model, run by ONNX Runtime's CPU execution provider
with all graph optimizations, or its CUDA provider where onnxruntime-gpu is installed.

The artifact is a plain `model.onnx` (input ``input``, output ``logits``, dynamic batch) that
any ONNX runtime can load. INT8 engines are the float capture with Q/DQ placed by ONNX Runtime's
own quantizer (QDQ U8S8 per-channel, onnxruntime_int8.py) from the calibration's ONNX Runtime ranges,
run by its integer kernels (QLinearConv, QLinearConcat, ...): ModelOpt's Q/DQ ONNX left almost
every convolution in float here.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..engine.capture import INPUT_NAME, OUTPUT_NAME, capture_onnx
from ..engine.graph_parts import LOGITS, exposing, stage_tensors
from ..int8.coverage import LayerPrecisions, onnxruntime_precisions
from ..profiling.layers import CALLS, WARMUP_CALLS
from ..engine.spec import BuildSpec, Precision
from ..profiling.throughput import Requests, Threads
from .base import Availability, Int8Placement, Runtime, TritonTarget
from .onnxruntime_int8 import PLACEMENT, prepared_model, qdq_model, quantizer
from .settings import Settings

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest

FILE = "model.onnx"
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
OPTIMIZATION = "ORT_ENABLE_ALL"


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What an onnxruntime engine's manifest records (``backend_settings``): ``build`` writes it,
    ``load`` reads it once and its runtime's sessions are made with it."""

    provider: str
    graph_optimization_level: str
    int8_placement: str | None = None  # PLACEMENT's name, for int8 engines
    quantizer: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def read(cls, manifest: EngineManifest) -> Recorded:
        """The manifest's record, checked against its device (fields of older versions it lacks are left out)."""
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
        return cls(provider, level, settings.get("int8_placement"), settings.get("quantizer"))


def _providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnx"
    settings: type[Settings] = Settings
    int8_placement: Int8Placement = PLACEMENT

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

        recorded = Recorded(_PROVIDERS[spec.device], OPTIMIZATION)
        if spec.precision is Precision.INT8:
            quant = spec.int8_ranges
            if quant is None:
                raise DenseNetTRTError("an onnxruntime int8 build needs the calibration's ONNX Runtime ranges")
            prepared = prepared_model(model, spec.batch, spec.image_size)
            proto = qdq_model(prepared, quant.ranges, quant.float_layers, quant.calibration)
            recorded = dataclasses.replace(recorded, int8_placement=PLACEMENT.name,
                                           quantizer=quantizer(quant.calibration))
        else:
            dtype = spec.precision.dtype
            proto = capture_onnx(model.to(dtype=dtype), spec.batch, spec.image_size, dtype=dtype)
        onnx.save(proto, str(folder / FILE))
        return recorded.as_dict()

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        return OnnxRuntimeRuntime(folder, manifest, Recorded.read(manifest))

    def check_compatible(self, manifest: EngineManifest) -> None:
        device = manifest.device.type
        if device not in self.devices:
            raise DenseNetTRTError(
                f"this engine runs on ONNX Runtime's {_PROVIDERS[device]}, which is not installed here"
            )

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """``model.onnx`` runs on Triton's ONNX Runtime runner, with the graph's tensor names and
        the engine's thread count."""
        return TritonTarget(("platform", "onnxruntime_onnx"), {FILE: FILE}, INPUT_NAME, OUTPUT_NAME, "KIND_CPU",
                            parameters=_triton_parameters)


def _triton_parameters(manifest: EngineManifest) -> dict[str, str]:
    """The engine's intra-op threads as Triton's onnxruntime backend parameter
    ``intra_op_thread_count`` (none recorded: ONNX Runtime's choice, as the engine runs). Like the
    engine's session, Triton's runs sequentially (its execution_mode 0), which ignores
    ``inter_op_thread_count``: not set."""
    return {"intra_op_thread_count": str(manifest.threads)} if manifest.threads else {}


class OnnxRuntimeRuntime(Runtime):
    """An ONNX Runtime session of ``model.onnx`` with the ``recorded`` settings; the sessions its
    capabilities need (several in flight, profiling, extra outputs) come from ``session``."""

    def __init__(self, folder: Path, manifest: EngineManifest, recorded: Recorded):
        super().__init__(folder, manifest)
        self.recorded = recorded
        self._session = self.session(manifest.threads)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        feed = {INPUT_NAME: x.to("cpu", self.manifest.precision.dtype).numpy()}
        return torch.from_numpy(self._session.run([OUTPUT_NAME], feed)[0])

    def session(self, threads: int | None, model: bytes | None = None, **options: Any):
        """A session of ``model`` (serialized; default the engine's file) with the recorded
        provider and optimization level, ``threads`` intra-op threads (None: ONNX Runtime's
        choice) and ``options`` set on its SessionOptions."""
        import onnxruntime

        session_options = onnxruntime.SessionOptions()
        session_options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel,
                                                           self.recorded.graph_optimization_level)
        if threads:
            session_options.intra_op_num_threads = threads
        for name, value in options.items():
            setattr(session_options, name, value)
        source = str(self.folder / FILE) if model is None else model
        return onnxruntime.InferenceSession(source, session_options, providers=[self.recorded.provider])

    def in_flight(self, x: torch.Tensor, requests: int | None, threads: int) -> Requests | str:
        """Several sessions of the same model, each in its own thread with its share of the CPU threads."""
        n = requests or min(2, threads)
        if n < 2:
            return "1 request at a time: ONNX Runtime sessions share 1 CPU thread here; give requests=N"
        each = max(1, threads // n)
        sessions = [self.session(each) for _ in range(n)]
        feed = {INPUT_NAME: x.to(self.manifest.precision.dtype).numpy()}
        how = f"ONNX Runtime, {n} sessions in {n} threads, {each} CPU thread{'s' if each > 1 else ''} each"
        return Threads([lambda s=s: s.run(None, feed) for s in sessions], how)

    def layer_times(self, x: torch.Tensor, threads: int) -> tuple[str, dict[tuple[str, str], float]] | str:
        """ONNX Runtime's profiler: a session with ``enable_profiling``, its JSON trace read by
        ``_onnxruntime_nodes``."""
        with tempfile.TemporaryDirectory(prefix="densenet-trt-layers-") as folder:
            session = self.session(threads, enable_profiling=True, profile_file_prefix=f"{folder}/ort")
            feed = {session.get_inputs()[0].name: x.to(self.manifest.precision.dtype).numpy()}
            for _ in range(WARMUP_CALLS + CALLS):
                session.run(None, feed)
            with open(session.end_profiling()) as f:
                events = json.load(f)
        return "ONNX Runtime profiler (enable_profiling)", _onnxruntime_nodes(events, WARMUP_CALLS, CALLS)


    def layer_precisions(self) -> LayerPrecisions | str:
        """The layer precisions of the graph ONNX Runtime runs: the one it writes after its
        optimizations, from a session with the recorded settings."""
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            optimized = str(Path(tmp) / "optimized.onnx")
            # severity 3, errors only: not its warning that the optimized graph is for this machine only
            self.session(None, optimized_model_filepath=optimized, log_severity_level=3)
            return onnxruntime_precisions(onnx.load(optimized).graph)

    def exposed(self, stages: list[tuple[str, str]], net: nn.Module, quantized: nn.Module | None,
                progress: Callable[[str], None] = lambda message: None,
                ) -> Callable[[torch.Tensor], dict[str, torch.Tensor]] | str:
        """A second session of ``model.onnx`` with each part's last tensor (found by its module
        scope) added as a graph output: a batch in, the parts' outputs and the logits out."""
        import onnx

        progress(exposing(self.manifest.backend, stages))
        proto = onnx.load(str(self.folder / FILE))
        elem_type = proto.graph.output[0].type.tensor_type.elem_type
        present = {o.name for o in proto.graph.output}
        tensors = {**stage_tensors(proto, stages), LOGITS: proto.graph.output[0].name}
        for name in dict.fromkeys(tensors.values()):
            if name not in present:
                proto.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))
        session = self.session(self.manifest.threads, model=proto.SerializeToString())
        dtype = self.manifest.precision.dtype

        def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
            values = session.run(list(tensors.values()), {session.get_inputs()[0].name: x.to(dtype).numpy()})
            return {stage: torch.from_numpy(v).float() for stage, v in zip(tensors, values)}

        return run


def _onnxruntime_nodes(events: list[dict[str, Any]], skip: int, calls: int) -> dict[tuple[str, str], float]:
    """Mean milliseconds per node over the last ``calls`` runs of an ONNX Runtime trace (``dur``
    in microseconds; a node's kernel event is NAME_kernel_time), the first ``skip`` runs left out."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    begin = runs[skip]["ts"] if len(runs) > skip else 0
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time") and e.get("ts", 0) >= begin:
            key = (name[: -len("_kernel_time")], e.get("args", {}).get("op_name", ""))
            totals[key] += e["dur"] / 1e3 / calls
    return dict(totals)
