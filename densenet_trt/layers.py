"""Per-layer timing, where the engine's runtime offers it: OpenVINO's performance counters
(``PERF_COUNT`` on a second compiled model of the same IR and settings) and ONNX Runtime's
profiler (``SessionOptions.enable_profiling``, its JSON trace). Each layer's time is its mean
over a few calls after warm-up."""

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
    else:
        where = "" if engine.device == "cpu" else f" on {engine.device}"
        return LayerTimes(index, batch, "", f"per-layer timing is not offered by {engine.backend}{where}", 0.0, [])
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
