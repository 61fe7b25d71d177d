"""Measured throughput: images completed / wall time, as trtexec and OpenVINO's benchmark_app
measure it. Back to back (one request at a time, no pause) for every runner; with several
requests in flight where the runtime offers it:

- OpenVINO: an ``AsyncInferQueue`` on a second compiled model of the same IR and settings with
  ``PERFORMANCE_HINT=THROUGHPUT`` (the engine's own is compiled for LATENCY);
- ONNX Runtime: several sessions of the same model, each in its own thread with its share of
  the CPU threads;
- GPU engines (any backend): several CUDA streams, one thread each.

Other runtimes (TorchScript, inductor on the CPU) run one request at a time: their calls
already use every CPU thread.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
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
    """``len(workers)`` threads, each calling its own worker (a session, a stream) in turn."""

    def __init__(self, workers: list[Callable[[], object]], how: str):
        self.workers, self.how, self.requests = workers, how, len(workers)

    def run(self, stop: Stop) -> tuple[list[float], float]:
        lock, times, started = threading.Lock(), [], [0]
        start = time.perf_counter()

        def loop(call: Callable[[], object]) -> None:
            while True:
                with lock:
                    if stop(started[0], time.perf_counter() - start):
                        return
                    started[0] += 1
                t = time.perf_counter_ns()
                call()
                times.append((time.perf_counter_ns() - t) / 1e6)

        with ThreadPoolExecutor(len(self.workers)) as pool:
            for future in [pool.submit(loop, w) for w in self.workers]:
                future.result()
        return times, time.perf_counter() - start


class OpenVinoQueue(Requests):
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


def in_flight(engine: Any, x: torch.Tensor, requests: int | None, threads: int) -> Requests | str:
    """Several requests of ``engine`` on ``x`` in flight, or why its runtime offers none here."""
    if engine.device == "cuda":
        return _cuda_streams(engine, x, requests or 2)
    if engine.backend == "openvino":
        return _openvino(engine, x, requests, threads)
    if engine.backend == "onnxruntime":
        n = requests or min(2, threads)
        if n < 2:
            return "1 request at a time: ONNX Runtime sessions share 1 CPU thread here; give requests=N"
        return _onnxruntime(engine, x, n, threads)
    return f"{engine.backend} on the CPU: one request at a time (each call uses every CPU thread)"


def _openvino(engine: Any, x: torch.Tensor, requests: int | None, threads: int) -> Requests:
    import openvino

    m = engine.manifest
    config = {**m.backend_settings["config"], "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": threads}
    if requests:
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = requests
    compiled = openvino.Core().compile_model(str(engine.path / m.main_file), "CPU", config)
    n = requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    streams = compiled.get_property("NUM_STREAMS")
    hint = m.backend_settings["config"].get("PERFORMANCE_HINT")
    queue = OpenVinoQueue(openvino.AsyncInferQueue(compiled, n), np.ascontiguousarray(x.numpy()), n,
                          f"OpenVINO AsyncInferQueue, THROUGHPUT hint, {streams} streams")
    if hint != "THROUGHPUT":
        queue.note = (f"throughput with requests in flight: a second compiled model of the same IR and settings "
                      f"with PERFORMANCE_HINT=THROUGHPUT (the engine's own is compiled for {hint})")
    return queue


def _onnxruntime(engine: Any, x: torch.Tensor, n: int, threads: int) -> Requests:
    import onnxruntime

    m = engine.manifest
    settings = m.backend_settings
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, settings["graph_optimization_level"])
    options.intra_op_num_threads = max(1, threads // n)
    sessions = [onnxruntime.InferenceSession(str(engine.path / m.main_file), options,
                                             providers=[settings["provider"]]) for _ in range(n)]
    feed = {sessions[0].get_inputs()[0].name: x.to(m.precision.dtype).numpy()}
    workers = [lambda s=s: s.run(None, feed) for s in sessions]
    each = options.intra_op_num_threads
    how = f"ONNX Runtime, {n} sessions in {n} threads, {each} CPU thread{'s' if each > 1 else ''} each"
    return Threads(workers, how)


def _cuda_streams(engine: Any, x: torch.Tensor, n: int) -> Requests:
    device_x = x.to("cuda")
    streams = [torch.cuda.Stream() for _ in range(n)]

    def worker(stream: torch.cuda.Stream) -> Callable[[], object]:
        def call() -> None:
            with torch.cuda.stream(stream):
                engine.run(device_x)
            stream.synchronize()

        return call

    return Threads([worker(s) for s in streams], f"{n} CUDA streams, one thread each")
