"""Per-layer timing, where the engine's runtime offers it: OpenVINO's performance counters
(``PERF_COUNT`` on a second compiled model of the same IR and settings), ONNX Runtime's
profiler (``SessionOptions.enable_profiling``, its JSON trace) and, for TensorRT's raw plans
(format ``engine``), TensorRT's ``IProfiler`` on an execution context of the plan. Each layer's
time is its mean over a few calls after warm-up."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from .report import Layer, LayerTimes

WARMUP_CALLS = 2
CALLS = 5


def layer_times(index: int, engine: Any, x: torch.Tensor, batch: int, slowest: int, threads: int) -> LayerTimes:
    """The ``slowest`` layers of ``engine`` (report index ``index``) on ``x``, or a note saying
    that its runtime offers no per-layer timing here."""
    if engine.device == "cpu" and engine.backend == "openvino":
        source, totals = "OpenVINO performance counters (PERF_COUNT)", _openvino(engine, x, threads)
    elif engine.backend == "onnxruntime":
        source, totals = "ONNX Runtime profiler (enable_profiling)", _onnxruntime(engine, x, threads)
    elif engine.backend == "tensorrt" and engine.manifest.format == "engine":
        source, totals = "TensorRT IProfiler", _tensorrt_plan(engine, x)
    else:
        what = f"{engine.backend} ({engine.manifest.format})" if engine.backend == "tensorrt" else engine.backend
        where = "" if engine.device == "cpu" else f" on {engine.device}"
        hint = "; build with format engine for TensorRT's per-layer times" if engine.backend == "tensorrt" else ""
        return LayerTimes(index, batch, "", f"per-layer timing is not offered by {what}{where}{hint}", 0.0, [])
    layers = sorted((Layer(name, kind, ms) for (name, kind), ms in totals.items()), key=lambda t: -t.ms)
    return LayerTimes(index, batch, source, "", sum(t.ms for t in layers), layers[:slowest])


def _openvino(engine: Any, x: torch.Tensor, threads: int) -> dict[tuple[str, str], float]:
    import openvino

    m = engine.manifest
    config = {**m.backend_settings["config"], "PERF_COUNT": True, "INFERENCE_NUM_THREADS": threads}
    request = openvino.Core().compile_model(str(engine.path / m.main_file), "CPU", config).create_infer_request()
    array = np.ascontiguousarray(x.numpy())
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for call in range(WARMUP_CALLS + CALLS):
        request.infer({0: array})
        if call < WARMUP_CALLS:
            continue
        for info in request.get_profiling_info():
            if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_RUN"):
                totals[(info.node_name, info.node_type)] += info.real_time.total_seconds() * 1e3 / CALLS
    return dict(totals)


def _onnxruntime(engine: Any, x: torch.Tensor, threads: int) -> dict[tuple[str, str], float]:
    import onnxruntime

    m = engine.manifest
    settings = m.backend_settings
    with tempfile.TemporaryDirectory(prefix="densenet-trt-layers-") as folder:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel,
                                                   settings["graph_optimization_level"])
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = f"{folder}/ort"
        session = onnxruntime.InferenceSession(str(engine.path / m.main_file), options,
                                               providers=[settings["provider"]])
        feed = {session.get_inputs()[0].name: x.to(m.precision.dtype).numpy()}
        for _ in range(WARMUP_CALLS + CALLS):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    return _onnxruntime_nodes(events, WARMUP_CALLS, CALLS)


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


def _tensorrt_plan(engine: Any, x: torch.Tensor) -> dict[tuple[str, str], float]:
    """TensorRT's own per-layer times of a raw plan: an ``IProfiler`` on an execution context."""
    import tensorrt as trt

    plan = (engine.path / engine.manifest.main_file).read_bytes()
    cuda_engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan)
    context = cuda_engine.create_execution_context()

    class Profiler(trt.IProfiler):
        def __init__(self) -> None:
            super().__init__()
            self.counting, self.totals = False, defaultdict(float)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if self.counting:
                self.totals[(layer_name, "")] += ms / CALLS

    profiler = Profiler()
    context.profiler = profiler
    names = [cuda_engine.get_tensor_name(i) for i in range(cuda_engine.num_io_tensors)]
    inputs = [n for n in names if cuda_engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    tensors = {}
    def dtype(name: str) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=trt.nptype(cuda_engine.get_tensor_dtype(name)))).dtype

    for name in inputs:
        context.set_input_shape(name, tuple(x.shape))
        tensors[name] = x.to("cuda", dtype(name)).contiguous()
    for name in names:
        if name not in inputs:  # shapes known once the inputs' are set
            tensors[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype(name), device="cuda")
    for name, tensor in tensors.items():
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.current_stream()
    for call in range(WARMUP_CALLS + CALLS):
        profiler.counting = call >= WARMUP_CALLS
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
    return dict(profiler.totals)
