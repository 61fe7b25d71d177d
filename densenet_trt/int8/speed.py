"""Does int8 pay off? ``build`` times an int8 engine against the same backend's float32 engine,
built by the same plan at fp32 (``build``'s compile step: the same float32 model, batch range,
threads, device and options) in a temporary folder (removed after; nothing is added to the
engine folder), both timed
interleaved at the engine's opt batch: ``WARMUP`` calls each discarded, then the median of
``CALLS`` each. Where int8 is not faster it warns (``Int8NotFaster``) and says by how much;
the manifest records both medians (``int8_speed``) and ``info`` shows them.

A few calls each: enough to see a 2x difference, not a few percent (``densenet-trt profile``
measures properly).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..engine.capture import example_input
from ..engine.load import Engine
from ..engine.manifest import Int8SpeedRecord
from ..progress import Progress, step
from ..profiling.timing import Timer, cpu_timer, cuda_timer, interleave

WARMUP = 3
CALLS = 7


class Int8NotFaster(UserWarning):
    """An int8 engine no faster than its backend's float32 engine, as timed at the build."""


def check_int8_speed(engine: Engine, float32_engine: Callable[[Path], Engine], progress: Progress) -> Int8SpeedRecord:
    """Time the int8 ``engine`` against its backend's float32 engine, which ``float32_engine``
    builds into the folder it is given and loads; warn where int8 is not faster. Returns both medians."""
    n = engine.batch.opt
    doing = (f"timing int8 against {engine.backend}'s float32 engine (built in a temporary folder; "
             f"{WARMUP} + {CALLS} calls each at batch {n})")
    with step(progress, doing, "timed int8 against float32"), tempfile.TemporaryDirectory() as tmp:
        float32 = float32_engine(Path(tmp))
        x = example_input(n, engine.image_size, engine.in_channels)
        int8_ms, float32_ms = (statistics.median(s["latency"] for s in samples) for samples in
                               interleave([_timer(engine, x), _timer(float32, x)], warmup=WARMUP, iterations=CALLS))
    record = Int8SpeedRecord(n, CALLS, round(int8_ms, 3), round(float32_ms, 3))
    progress(f"  {speed_text(record)}")
    message = not_faster(record)
    if message:
        warnings.warn(message, Int8NotFaster, stacklevel=3)
    return record


def _timer(engine: Engine, x: torch.Tensor) -> Timer:
    """A timer of one call of ``engine``'s runner on ``x``: CUDA events on a GPU, else the clock."""
    if engine.device == "cuda":
        return cuda_timer(engine.run, x)
    return cpu_timer(lambda: engine.run(x))


def _ratio(record: Int8SpeedRecord) -> float:
    return record.int8_ms / record.float32_ms if record.float32_ms > 0 else math.inf


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 1.1 else f"{ratio:.1f}x"


def speed_text(record: Int8SpeedRecord) -> str:
    """The record as one line: both medians and which is faster by how much."""
    ratio = _ratio(record)
    verdict = f"{_times(1 / ratio)} faster" if ratio < 1 else f"{_times(ratio)} slower"
    return (f"int8 {_ms(record.int8_ms)}, float32 {_ms(record.float32_ms)} at batch {record.batch} "
            f"(medians of {record.calls} calls each, timed at the build): int8 is {verdict}")


def not_faster(record: Int8SpeedRecord) -> str | None:
    """The warning where the int8 median is not below the float32 median; else None."""
    if record.int8_ms < record.float32_ms:
        return None
    return (f"int8 is not faster than this backend's float32 engine: {_ms(record.int8_ms)} vs "
            f"{_ms(record.float32_ms)} at batch {record.batch} ({_times(_ratio(record))} slower); see docs/int8.md")
