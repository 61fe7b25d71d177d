"""The load sweep: a model a Triton server serves (``densenet-trt serve``, or any Triton server
with a one-input model) driven at a sweep of concurrencies, and the same engine in-process in
the same run.

At each concurrency C, C client threads send requests of ``batch`` random float32 images back
to back for ``duration`` seconds after ``warmup`` seconds; each request's latency is timed at
the client. Throughput is images completed / wall time. Triton's statistics, read before and
after each step, give the server side: the mean queue time per request, the mean compute time
per request (compute_input + compute_infer + compute_output) and the mean batch the dynamic
batcher formed (inferences / executions).

In-process, C threads call the engine loaded here, one call at a time (as the server's one
model instance runs them), so each request's latency includes its wait for the engine: the
difference from the server's rows is the server's cost less what dynamic batching gains.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..defaults import LOADTEST_CONCURRENCIES, LOADTEST_DURATION, LOADTEST_WAIT, LOADTEST_WARMUP
from ..errors import DenseNetTRTError
from ..progress import Progress, quiet
from .stats import Stats, summarize

if TYPE_CHECKING:  # the command line reads this module's names before torch loads
    from ..engine.load import Engine
MAX_CONCURRENCY = 256
SERVER, IN_PROCESS = "server", "in-process"


@dataclasses.dataclass(frozen=True)
class LoadRow:
    """One runner at one concurrency. ``queue_ms``, ``compute_ms`` and ``server_batch``: from the
    server's statistics (None in-process)."""

    runner: str
    concurrency: int
    batch: int
    latency_ms: Stats
    images_per_s: float
    wall_s: float
    failed: int = 0
    queue_ms: float | None = None
    compute_ms: float | None = None
    server_batch: float | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """What the client threads of one step measured."""

    latencies_ms: list[float]
    wall_s: float
    failed: int
    error: str


def run_threads(call: Callable[[], None], concurrency: int, duration: float) -> Step:
    """``concurrency`` threads calling ``call`` back to back until ``duration`` seconds have passed;
    each call's latency (ms), the wall time from the start to the last call's end, and the
    failures (exceptions) with the first one's message."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + duration

    def worker(mine: list[float]) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                call()
            except Exception as e:  # a failed request is counted, not fatal: the step goes on
                errors.append(str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
                continue
            mine.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=worker, args=(mine,), daemon=True) for mine in latencies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return Step([x for mine in latencies for x in mine], wall, len(errors), errors[0] if errors else "")


def row(runner: str, concurrency: int, batch: int, step: Step, server: dict[str, float] | None = None) -> LoadRow:
    """The row of a step; DenseNetTRTError where no request succeeded."""
    if not step.latencies_ms:
        raise DenseNetTRTError(f"{runner} at concurrency {concurrency}: every request failed "
                               f"({step.failed}; the first: {step.error})")
    server = server or {}
    return LoadRow(runner, concurrency, batch, summarize(step.latencies_ms),
                   len(step.latencies_ms) * batch / step.wall_s, step.wall_s, step.failed,
                   server.get("queue_ms"), server.get("compute_ms"), server.get("server_batch"))


def statistics_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """The server side of a step from two of Triton's model statistics (the JSON of
    ``get_inference_statistics``, gRPC's strings or HTTP's numbers): mean queue and compute
    milliseconds per request and the mean batch executed."""
    def totals(stats: dict[str, Any]) -> dict[str, float]:
        model = stats["model_stats"][0]
        inference = model["inference_stats"]
        ns = {key: float(inference.get(key, {}).get("ns", 0)) for key in
              ("queue", "compute_input", "compute_infer", "compute_output")}
        return {**ns, "requests": float(inference.get("success", {}).get("count", 0)),
                "inferences": float(model.get("inference_count", 0)),
                "executions": float(model.get("execution_count", 0))}

    a, b = totals(before), totals(after)
    d = {key: b[key] - a[key] for key in a}
    if d["requests"] <= 0 or d["executions"] <= 0:
        return {}
    compute = d["compute_input"] + d["compute_infer"] + d["compute_output"]
    return {"queue_ms": d["queue"] / d["requests"] / 1e6, "compute_ms": compute / d["requests"] / 1e6,
            "server_batch": d["inferences"] / d["executions"]}


class Client:
    """A served model over HTTP or gRPC (``url``: http://HOST:PORT or grpc://HOST:PORT) through
    tritonclient: its one input read from the model's metadata, a client per thread."""

    def __init__(self, url: str, model: str, wait: float = LOADTEST_WAIT):
        scheme, sep, address = url.partition("://")
        if not sep or scheme not in ("http", "grpc") or not address:
            raise DenseNetTRTError(f"server URL {url!r} is not http://HOST:PORT or grpc://HOST:PORT")
        try:
            if scheme == "http":
                import tritonclient.http as module
            else:
                import tritonclient.grpc as module
        except ImportError as e:
            raise DenseNetTRTError(f"loadtest needs tritonclient ({e}): pip install 'tritonclient[all]'") from None
        self.url, self.model, self.module, self.address, self.scheme = url, model, module, address, scheme
        self._local = threading.local()
        self.input_name, self.datatype, self.shape = self._metadata(wait)

    def client(self) -> Any:
        """This thread's client."""
        if not hasattr(self._local, "client"):
            self._local.client = self.module.InferenceServerClient(self.address)
        return self._local.client

    def _metadata(self, wait: float) -> tuple[str, str, list[int]]:
        """The model's one input, once it is ready (waiting up to ``wait`` seconds for the server
        and the model: a server just started loads its models first)."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + wait
        while True:
            try:
                if self.client().is_model_ready(self.model):
                    meta = self.client().get_model_metadata(self.model)
                    break
                reason = "it is not ready (is it served there?)"
            except (InferenceServerException, OSError) as e:
                reason = str(e).strip() or type(e).__name__
            if time.monotonic() >= deadline:
                raise DenseNetTRTError(f"model {self.model!r} on {self.url}: {reason}; waited {wait:g} s")
            time.sleep(0.5)
        inputs = meta["inputs"] if isinstance(meta, dict) else [
            {"name": i.name, "datatype": i.datatype, "shape": list(i.shape)} for i in meta.inputs]
        if len(inputs) != 1:
            raise DenseNetTRTError(f"model {self.model!r} has {len(inputs)} inputs; loadtest drives one-input models")
        return inputs[0]["name"], inputs[0]["datatype"], [int(n) for n in inputs[0]["shape"]]

    def infer_call(self, batch: int, seed: int) -> Callable[[], None]:
        """A call sending ``batch`` random images (the model's per-image shape) to the model."""
        if self.datatype != "FP32":
            raise DenseNetTRTError(f"model {self.model!r} takes {self.datatype}; loadtest sends FP32 tensors")
        x = np.random.default_rng(seed).standard_normal((batch, *self.shape[1:]), dtype=np.float32)

        def call() -> None:
            tensor = self.module.InferInput(self.input_name, list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            self.client().infer(self.model, [tensor])

        return call

    def statistics(self) -> dict[str, Any]:
        from tritonclient.utils import InferenceServerException

        try:
            if self.scheme == "grpc":
                return self.client().get_inference_statistics(self.model, as_json=True)
            return self.client().get_inference_statistics(self.model)
        except InferenceServerException as e:
            raise DenseNetTRTError(f"cannot read the statistics of {self.model!r} on {self.url} ({e}); "
                                   "densenet-trt serve opens them") from None


def sweep(client: Client, engine: Engine | None, *, concurrencies: tuple[int, ...] = LOADTEST_CONCURRENCIES,
          batch: int = 1, duration: float = LOADTEST_DURATION, warmup: float = LOADTEST_WARMUP, seed: int = 0,
          progress: Progress = quiet) -> list[LoadRow]:
    """The served model at each concurrency, then ``engine`` in-process at each (where given)."""
    check_sweep(concurrencies, batch, duration, warmup)
    x = np.random.default_rng(seed).standard_normal((batch, *client.shape[1:]), dtype=np.float32)
    if engine is not None:  # refused before the server's steps, not after
        engine.batch.check(batch, "batch size")
        engine.check_input(x)
    rows = []
    call = client.infer_call(batch, seed)
    for c in concurrencies:
        progress(f"{client.url} {client.model}: concurrency {c}, batch {batch}")
        run_threads(call, c, warmup)
        before = client.statistics()
        step = run_threads(call, c, duration)
        rows.append(row(SERVER, c, batch, step, statistics_delta(before, client.statistics())))
    if engine is not None:
        lock = threading.Lock()

        def local() -> None:
            with lock:
                engine(x)

        for c in concurrencies:
            progress(f"{engine.path} in-process: concurrency {c}, batch {batch}")
            run_threads(local, c, warmup)
            rows.append(row(IN_PROCESS, c, batch, run_threads(local, c, duration)))
    return rows


def check_sweep(concurrencies: tuple[int, ...], batch: int, duration: float, warmup: float) -> None:
    if not concurrencies or any(not isinstance(c, int) or not 1 <= c <= MAX_CONCURRENCY for c in concurrencies):
        raise DenseNetTRTError(f"concurrencies must be 1 to {MAX_CONCURRENCY}, got {list(concurrencies)}")
    if not isinstance(batch, int) or batch < 1:
        raise DenseNetTRTError(f"batch size must be 1 or more, got {batch!r}")
    if not (math.isfinite(duration) and math.isfinite(warmup) and duration > 0 and warmup >= 0):
        raise DenseNetTRTError(f"duration must be over 0 and warmup 0 or more seconds, got {duration}, {warmup}")
