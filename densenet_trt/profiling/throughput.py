"""Measured throughput: images completed / wall time, as trtexec and OpenVINO's benchmark_app
measure it. Back to back (one request at a time, no pause) for every runner; with several
requests in flight where the runtime offers it: several CUDA streams, one thread each, for GPU
engines whose runtime gives a runner per stream (``Runtime.streams``: not one TensorRT execution
context shared by several streams); on the CPU, what the engine's runtime offers (``Runtime.in_flight`` in
``backends/``: OpenVINO's AsyncInferQueue, several ONNX Runtime sessions), else one request at
a time (TorchScript and inductor calls already use every CPU thread).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import torch

Stop = Callable[[int, float], bool]
"""``stop(started, seconds)``: whether to start no more requests, after ``started`` of them
and ``seconds`` of wall time."""


def stop_after(iterations: int | None, duration: float | None) -> Stop:
    """``iterations`` requests, or as many as start within ``duration`` seconds (at least one)."""
    if iterations is not None:
        return lambda started, seconds: started >= iterations
    return lambda started, seconds: started > 0 and seconds >= duration


class Requests:
    """A way to run requests: ``run(stop)`` keeps ``requests`` of them in flight until ``stop``
    says so and returns each one's milliseconds and the wall seconds of the whole."""

    how = ""
    requests = 1
    note = ""  # what the report should say about how these requests ran, once per engine

    def run(self, stop: Stop) -> tuple[list[float], float]:
        raise NotImplementedError

    def measure(self, warmup: Stop, stop: Stop) -> tuple[list[float], float]:
        """Warm up until ``warmup`` says so (not timed), then ``run(stop)``."""
        self.run(warmup)
        return self.run(stop)


class BackToBack(Requests):
    """One request at a time, each after the last has finished (``sync``: wait for the device)."""

    def __init__(self, call: Callable[[], object], sync: Callable[[], None] = lambda: None):
        self.call, self.sync = call, sync
        self.how = "back to back"

    def run(self, stop: Stop) -> tuple[list[float], float]:
        times: list[float] = []
        start = time.perf_counter()
        while not stop(len(times), time.perf_counter() - start):
            t = time.perf_counter_ns()
            self.call()
            self.sync()
            times.append((time.perf_counter_ns() - t) / 1e6)
        return times, time.perf_counter() - start


class Threads(Requests):
    """``len(workers)`` threads, each calling its own worker (a session, a stream) in turn.

    ``measure`` warms up and measures in the same threads, and warms each thread: state that
    PyTorch keeps per thread (cuDNN's benchmark cache of the v8 API, its handles) would
    otherwise be rebuilt inside the timed requests (measured on an H200: densenet121 on two
    CUDA streams took 3.8 s per request when each measurement started fresh threads)."""

    def __init__(self, workers: list[Callable[[], object]], how: str):
        self.workers, self.how, self.requests = workers, how, len(workers)

    def run(self, stop: Stop) -> tuple[list[float], float]:
        return self.measure(stop_after(0, None), stop)

    def measure(self, warmup: Stop, stop: Stop) -> tuple[list[float], float]:
        """Each thread warms up its own worker until ``warmup`` says so; the last one to finish
        starts the clock, and all run until ``stop``. A worker that fails while warming up
        releases the others, and its error is the one raised."""
        lock, times, started, start = threading.Lock(), [], [0], [0.0]
        warmed_up = threading.Barrier(len(self.workers), action=lambda: start.__setitem__(0, time.perf_counter()))

        def loop(call: Callable[[], object]) -> None:
            try:
                began, warmed = time.perf_counter(), 0
                while not warmup(warmed, time.perf_counter() - began):
                    call()
                    warmed += 1
                warmed_up.wait()
            except BaseException:
                warmed_up.abort()
                raise
            while True:
                with lock:
                    if stop(started[0], time.perf_counter() - start[0]):
                        return
                    started[0] += 1
                t = time.perf_counter_ns()
                call()
                times.append((time.perf_counter_ns() - t) / 1e6)

        with ThreadPoolExecutor(len(self.workers)) as pool:
            futures = [pool.submit(loop, w) for w in self.workers]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
        return times, time.perf_counter() - start[0]


def in_flight(engine: Any, x: torch.Tensor, requests: int | None, threads: int) -> Requests | str:
    """Several requests of ``engine`` on ``x`` in flight, or why its runtime offers none here:
    CUDA streams for a GPU engine whose runtime gives a runner per stream (``Runtime.streams``),
    else what the engine's runtime offers (``Runtime.in_flight``)."""
    if engine.device != "cuda":
        return engine.runtime.in_flight(x, requests, threads)
    runners = engine.runtime.streams(requests or 2)
    return runners if isinstance(runners, str) else _cuda_streams(runners, x)


def _cuda_streams(runners: list[Callable[[torch.Tensor], object]], x: torch.Tensor) -> Requests:
    device_x = x.to("cuda")

    def worker(run: Callable[[torch.Tensor], object]) -> Callable[[], object]:
        stream = torch.cuda.Stream()

        def call() -> None:
            with torch.cuda.stream(stream):
                run(device_x)
            stream.synchronize()

        return call

    return Threads([worker(r) for r in runners], f"{len(runners)} CUDA streams, one thread each")
