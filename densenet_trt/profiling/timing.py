"""Timers of one inference and the interleaved loop that samples them; memory; eager's tuning.

CPU calls are timed with ``time.perf_counter_ns``; GPU calls with CUDA events, optionally with
the copies of input and output timed apart, optionally replayed from a CUDA graph."""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from typing import Callable, Iterator, Sequence

import torch

Timer = Callable[[], dict[str, float]]
"""Runs one inference and returns its milliseconds: ``latency``, and with transfers ``h2d``,
``compute`` and ``d2h``."""


def cpu_timer(fn: Callable[[], object]) -> Timer:
    """A timer that calls ``fn`` and measures it with ``time.perf_counter_ns``."""

    def timer() -> dict[str, float]:
        start = time.perf_counter_ns()
        fn()
        return {"latency": (time.perf_counter_ns() - start) / 1e6}

    return timer


def cuda_timer(
    run: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    include_transfers: bool = False,
    cuda_graphs: bool = False,
) -> Timer:
    """A timer of ``run`` on ``x`` (a CPU tensor, copied to the GPU once) with CUDA events.

    ``cuda_graphs``: capture one call in a CUDA graph and time its replay. ``include_transfers``:
    each call also copies ``x`` from pinned host memory and the output back, timed apart."""
    device_x = x.to("cuda")
    step = _capture(run, device_x) if cuda_graphs else (lambda: run(device_x))
    if not include_transfers:
        return _event_timer(step)
    return _transfer_timer(step, device_x, x.pin_memory())


def _event_timer(step: Callable[[], torch.Tensor]) -> Timer:
    """A timer of ``step`` between two CUDA events."""

    def timer() -> dict[str, float]:
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        step()
        end.record()
        end.synchronize()
        return {"latency": start.elapsed_time(end)}

    return timer


def _transfer_timer(step: Callable[[], torch.Tensor], device_x: torch.Tensor, host_x: torch.Tensor) -> Timer:
    """A timer of copying ``host_x`` (pinned) into ``device_x``, ``step``, and copying its output
    back to pinned host memory: the whole and each phase."""
    out = step()
    host_out = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)

    def timer_with_transfers() -> dict[str, float]:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        events[0].record()
        device_x.copy_(host_x, non_blocking=True)
        events[1].record()
        y = step()
        events[2].record()
        host_out.copy_(y, non_blocking=True)
        events[3].record()
        events[3].synchronize()
        h2d, compute, d2h = (a.elapsed_time(b) for a, b in zip(events, events[1:]))
        return {"latency": events[0].elapsed_time(events[3]), "h2d": h2d, "compute": compute, "d2h": d2h}

    return timer_with_transfers


def _capture(run: Callable[[torch.Tensor], torch.Tensor], device_x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """``run(device_x)`` captured in a CUDA graph: a replay that returns the static output."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # lazy initialisation (cuBLAS handles, allocations) before capture
            run(device_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run(device_x)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def interleave(
    timers: Sequence[Timer],
    *,
    warmup: int = 0,
    warmup_time: float | None = None,
    iterations: int | None = None,
    duration: float | None = None,
    gap: float = 0.0,
) -> list[list[dict[str, float]]]:
    """Samples of each timer, measured in rounds (A B A B ...): ``warmup`` rounds (or
    ``warmup_time`` seconds of them) discarded, then ``iterations`` rounds, or rounds for
    ``duration`` seconds (at least one), each timed call after a pause of ``gap`` seconds."""
    if (iterations is None) == (duration is None):
        raise ValueError("give iterations or duration")
    start, rounds = time.perf_counter(), 0
    while rounds < warmup or (warmup_time is not None and time.perf_counter() - start < warmup_time):
        for timer in timers:
            timer()
        rounds += 1

    def measuring() -> bool:
        if iterations is not None:
            return rounds < iterations
        return rounds == 0 or time.perf_counter() - start < duration

    samples: list[list[dict[str, float]]] = [[] for _ in timers]
    start, rounds = time.perf_counter(), 0
    while measuring():
        for timer, out in zip(timers, samples):
            if gap:
                time.sleep(gap)
            out.append(timer())
        rounds += 1
    return samples


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)


def device_used_mb() -> float:
    """MiB in use on the current GPU, whoever allocated it (PyTorch, TensorRT, cuDNN): NVML's
    count where pynvml is installed, else CUDA's total minus free (``cudaMemGetInfo``)."""
    torch.cuda.synchronize()
    try:
        import pynvml

        pynvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except Exception:  # no pynvml, or NVML cannot see this device (containers): CUDA's count
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20


def resident_mb(load: Callable[[], object]) -> tuple[object, float]:
    """What ``load()`` returns and the device MiB it left in use (weights, engines, contexts)."""
    torch.cuda.empty_cache()
    before = device_used_mb()
    loaded = load()
    torch.cuda.empty_cache()
    return loaded, max(0.0, device_used_mb() - before)


def call_peak_mb(call: Callable[[], object]) -> float:
    """Device MiB one ``call()`` needs at its peak beyond what is resident: PyTorch's allocator
    peak, or the device's used memory grown outside PyTorch (TensorRT's contexts), the larger."""
    torch.cuda.empty_cache()
    before_used, before_allocated = device_used_mb(), torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    peak = (torch.cuda.max_memory_allocated() - before_allocated) / 2**20
    return max(0.0, peak, device_used_mb() - before_used)


@contextlib.contextmanager
def eager_as_users_run_it() -> Iterator[None]:
    """cuDNN picks its fastest convolution algorithms (``cudnn.benchmark``), as a user tuning
    eager PyTorch on a GPU would, and keeps convolutions in true float32 (PyTorch lets them round
    to TF32 by default), so that eager fp32 is the fp32 it says it is; both put back after."""
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark, cudnn.allow_tf32
    cudnn.benchmark, cudnn.allow_tf32 = True, False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32 = before
