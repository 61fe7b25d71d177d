"""Per-layer timing, where the engine's runtime offers it (``Runtime.layer_times`` in
``backends/``: OpenVINO's performance counters, ONNX Runtime's profiler, TensorRT's
``IProfiler`` on a raw plan). Each layer's time is its mean over ``CALLS`` calls after
``WARMUP_CALLS`` of warm-up."""

from __future__ import annotations

from typing import Any

import torch

from .report import Layer, LayerTimes

WARMUP_CALLS = 2
CALLS = 5


def layer_times(index: int, engine: Any, x: torch.Tensor, batch: int, slowest: int, threads: int) -> LayerTimes:
    """The ``slowest`` layers of ``engine`` (report index ``index``) on ``x``, or a note saying
    that its runtime offers no per-layer timing here."""
    timed = engine.runtime.layer_times(x, threads)
    if isinstance(timed, str):
        return LayerTimes(index, batch, "", timed, 0.0, [])
    source, totals = timed
    layers = sorted((Layer(name, kind, ms) for (name, kind), ms in totals.items()), key=lambda t: -t.ms)
    return LayerTimes(index, batch, source, "", sum(t.ms for t in layers), layers[:slowest])
