"""Latency and throughput of built engines, measured against eager PyTorch in the same run.

``profile`` loads each engine, draws one standard-normal input per batch size, warms up, then
times the engine and its eager PyTorch baseline interleaved (eager, engine, eager, engine, ...)
so that drift of a shared machine hits both alike; the speedup is the median of the paired
ratios eager/engine. CPU calls are timed with ``time.perf_counter_ns``, each after a short pause
(``gap``: PyTorch's OpenMP threads spin-wait after an eager run and would otherwise steal the
cores from the next call); GPU calls with CUDA events, the input already on the GPU unless
``include_transfers`` (then host-to-device, compute and device-to-host are timed apart too, as
trtexec does), optionally replayed from a CUDA graph (the engine only: eager stays eager).

The report (``ProfileReport``) is written as JSON, CSV, Markdown or a PNG plot. The JSON::

    {
      "schema": "densenet-trt/profile",
      "schema_version": 1,
      "date_utc": "2025-01-31T12:00:00+00:00",
      "settings": {                         # what was asked, defaults resolved
        "batches": [1, 8], "warmup": 3, "warmup_time": null,     # one of warmup / warmup_time
        "iterations": 20, "duration": null,                      # one of iterations / duration
        "vs": "eager",                      # or "none"
        "threads": 8,                       # torch (and engine) CPU threads during the run
        "cuda_graphs": false, "include_transfers": false,
        "gap": 0.2,                         # seconds of pause before each timed CPU call
        "seed": 123456                      # of the random inputs (torch.Generator)
      },
      "host": {"cpu": "...", "cpu_count": 16, "threads": 8, "python": "3.12.3",
               "platform": "...", "torch": "2.14.1", "numpy": "2.3.0", "densenet-trt": "0.1.0"},
      "engines": [{                         # rows refer to these by index
        "path": "engines/x", "name": "x", "model": "densenet121", "backend": "onnxruntime",
        "format": "onnx", "precision": "fp32", "batch_range": "1:8:32", "image_size": 224,
        "device": {"type": "cpu", "cpu": "...", "cpu_count": 16, "gpu": null},
                                            # this machine; GPU: {"name", "compute_capability",
                                            # "driver", "cuda"}
        "versions": {"densenet-trt": "0.1.0", "torch": "2.14.1", "onnxruntime": "1.23.0"},
                                            # from the manifest: what it was built with
        "build_seconds": 41.2, "load_seconds": 0.31,
        "eager": ["fp32"],                  # eager precisions measured against it
        "notes": ["eager fp16 is not run on cpu: ..."]
      }],
      "rows": [{                            # one per engine x batch x runner
        "engine": 0, "batch": 8,
        "runner": "engine",                 # or "eager" (PyTorch, same model and weights)
        "precision": "fp32",                # the runner's precision
        "latency_ms": {"count": 20, "min": .., "mean": .., "median": .., "p90": .., "p95": ..,
                       "p99": .., "max": .., "std": .., "cv": ..},
        "phases_ms": {"h2d": {...}, "compute": {...}, "d2h": {...}},  # include_transfers, else {}
        "images_per_s": 812.5,              # derived: batch / median
        "unstable": false,                  # derived: cv > 0.05 ("unstable, rerun")
        "speedup": null,                    # eager rows: the engine's speedup over this baseline
        "peak_host_rss_mb": 950.1,          # the process's peak RSS so far (getrusage)
        "peak_gpu_mb": null                 # GPU: torch.cuda.max_memory_allocated in this cell
      }],
      "skipped": [{"engine": 0, "batch": 64, "reason": "batch 64 is outside ..."}]
    }

Times are milliseconds; ``std`` is the population standard deviation and ``cv`` = std / mean;
percentiles interpolate linearly (numpy's default).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import datetime
import json
import os
import platform
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .version import __version__
from .artifact import atomic_path, check_writable, cpu_name, device_info
from .backends._torch import torch_precisions
from .backends.base import DTYPES, Engine
from .build import Progress, engine_reference, load, quiet, torch_threads
from .errors import DenseNetTRTError
from .export import example_input

SCHEMA = "densenet-trt/profile"
SCHEMA_VERSION = 1
UNSTABLE_CV = 0.05
DEFAULT_WARMUP = 3
DEFAULT_ITERATIONS = 20
DEFAULT_GAP = 0.2
OUTPUT_SUFFIXES = (".json", ".csv", ".md", ".png")

Timer = Callable[[], dict[str, float]]
"""Runs one inference and returns its milliseconds: ``latency``, and with transfers ``h2d``,
``compute`` and ``d2h``."""

_EAGER_CANNOT = {
    ("cpu", "fp16"): "PyTorch's CPU fp16 convolutions are slow reference code, no fair baseline",
}


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of a set of timings in milliseconds."""

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float

    @property
    def unstable(self) -> bool:
        """Spread too wide to trust the numbers: rerun on a quieter machine or for longer."""
        return self.cv > UNSTABLE_CV


def summarize(samples_ms: Sequence[float]) -> Stats:
    """Statistics of ``samples_ms`` (population std; linear-interpolated percentiles)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarize")
    mean = float(a.mean())
    std = float(a.std())
    p90, p95, p99 = (float(v) for v in np.percentile(a, [90, 95, 99]))
    return Stats(
        count=int(a.size), min=float(a.min()), mean=mean, median=float(np.median(a)),
        p90=p90, p95=p95, p99=p99, max=float(a.max()), std=std, cv=std / mean if mean > 0 else 0.0,
    )


def paired_speedup(baseline_ms: Sequence[float], engine_ms: Sequence[float]) -> float:
    """The median of the paired ratios baseline/engine (pairs measured back to back)."""
    if len(baseline_ms) != len(engine_ms) or not engine_ms:
        raise ValueError(f"need equally many paired samples, got {len(baseline_ms)} and {len(engine_ms)}")
    engine = np.asarray(engine_ms, dtype=np.float64)
    if (engine <= 0).any():
        raise ValueError("engine times must be positive")
    return float(np.median(np.asarray(baseline_ms, dtype=np.float64) / engine))


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


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

        def timer() -> dict[str, float]:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            step()
            end.record()
            end.synchronize()
            return {"latency": start.elapsed_time(end)}

        return timer

    host_x = x.pin_memory()
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


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``profile`` was asked, validated, defaults resolved."""

    batches: tuple[int, ...] = (1,)
    warmup: int | None = DEFAULT_WARMUP
    warmup_time: float | None = None
    iterations: int | None = DEFAULT_ITERATIONS
    duration: float | None = None
    vs: str = "eager"
    threads: int = 1
    cuda_graphs: bool = False
    include_transfers: bool = False
    gap: float = DEFAULT_GAP
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class EngineInfo:
    """An engine as profiled: what it is, what it was built with, where it ran."""

    path: str
    name: str
    model: str
    backend: str
    format: str
    precision: str
    batch_range: str
    image_size: int
    device: dict[str, Any]
    versions: dict[str, str]
    build_seconds: float | None
    load_seconds: float
    eager: list[str]
    notes: list[str]

    @property
    def device_name(self) -> str:
        return self.device["gpu"]["name"] if self.device["type"] == "cuda" else self.device["cpu"]

    def conditions(self) -> str:
        d = self.device
        where = (
            f"GPU {d['gpu']['name']} (compute capability {d['gpu']['compute_capability']}, "
            f"driver {d['gpu']['driver']}, CUDA {d['gpu']['cuda']})" if d["type"] == "cuda"
            else f"CPU {d['cpu']}"
        )
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        built = "" if self.build_seconds is None else f"built in {self.build_seconds:g} s, "
        return (
            f"{self.name}: {self.model}, {self.backend} ({self.format}), {self.precision}, "
            f"batch {self.batch_range}, {self.image_size}x{self.image_size}, on {where}; "
            f"{built}loaded in {self.load_seconds:.2f} s; built with {versions}"
        )


@dataclasses.dataclass(frozen=True)
class Row:
    """One runner (the engine, or eager PyTorch in one precision) at one batch size."""

    engine: int
    batch: int
    runner: str
    precision: str
    latency_ms: Stats
    phases_ms: dict[str, Stats]
    speedup: float | None
    peak_host_rss_mb: float
    peak_gpu_mb: float | None

    @property
    def images_per_s(self) -> float:
        return self.batch * 1000.0 / self.latency_ms.median

    @property
    def label(self) -> str:
        return "engine" if self.runner == "engine" else f"eager {self.precision}"


@dataclasses.dataclass(frozen=True)
class Skipped:
    engine: int
    batch: int
    reason: str


@dataclasses.dataclass(frozen=True)
class ProfileReport:
    """The measurements of one ``profile`` call and the conditions they were taken in."""

    date_utc: str
    settings: Settings
    host: dict[str, Any]
    engines: list[EngineInfo]
    rows: list[Row]
    skipped: list[Skipped]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in this module's docstring."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "date_utc": self.date_utc,
            "settings": {**dataclasses.asdict(self.settings), "batches": list(self.settings.batches)},
            "host": dict(self.host),
            "engines": [dataclasses.asdict(e) for e in self.engines],
            "rows": [
                {**dataclasses.asdict(r), "images_per_s": r.images_per_s, "unstable": r.latency_ms.unstable}
                for r in self.rows
            ],
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileReport:
        if data.get("schema") != SCHEMA or data.get("schema_version") != SCHEMA_VERSION:
            raise DenseNetTRTError(
                f"not a {SCHEMA} version {SCHEMA_VERSION} report (schema {data.get('schema')!r}, "
                f"version {data.get('schema_version')!r}); profile again with this densenet-trt"
            )
        derived = {"images_per_s", "unstable"}
        rows = []
        for r in data["rows"]:
            r = {k: v for k, v in r.items() if k not in derived}
            rows.append(Row(**{
                **r,
                "latency_ms": Stats(**r["latency_ms"]),
                "phases_ms": {k: Stats(**v) for k, v in r["phases_ms"].items()},
            }))
        return cls(
            date_utc=data["date_utc"],
            settings=Settings(**{**data["settings"], "batches": tuple(data["settings"]["batches"])}),
            host=dict(data["host"]),
            engines=[EngineInfo(**e) for e in data["engines"]],
            rows=rows,
            skipped=[Skipped(**s) for s in data["skipped"]],
        )

    def conditions(self) -> list[str]:
        """One line for the run, then one per engine."""
        s, h = self.settings, self.host
        warmup = f"{s.warmup} warm-up rounds" if s.warmup is not None else f"{s.warmup_time:g} s warm-up"
        amount = f"{s.iterations} iterations" if s.iterations is not None else f"{s.duration:g} s"
        baseline = "interleaved with eager PyTorch" if s.vs == "eager" else "no eager baseline"
        gpu = f", CUDA graphs {'on' if s.cuda_graphs else 'off'}, transfers {'in' if s.include_transfers else 'out'}"
        run = (
            f"{self.date_utc}; {h['cpu']} ({h['cpu_count']} cores), {h['threads']} torch threads; "
            f"python {h['python']}, torch {h['torch']}, densenet-trt {h['densenet-trt']}; "
            f"{amount} after {warmup}, {baseline}, {s.gap:g} s gap before CPU calls{gpu}"
        )
        return [run, *(f"[{i}] {e.conditions()}" for i, e in enumerate(self.engines))]

    def table(self) -> str:
        """The conditions and a Markdown table (aligned, for the terminal too)."""
        header = ["engine", "batch", "runner", "median ms", "p90 ms", "p99 ms", "min ms", "max ms",
                  "cv", "images/s", "engine speedup vs this"]
        body = [
            [f"[{r.engine}]", str(r.batch), r.label, _ms(r.latency_ms.median), _ms(r.latency_ms.p90),
             _ms(r.latency_ms.p99), _ms(r.latency_ms.min), _ms(r.latency_ms.max),
             f"{r.latency_ms.cv:.1%}" + (" unstable, rerun" if r.latency_ms.unstable else ""),
             f"{r.images_per_s:.1f}", "" if r.speedup is None else f"{r.speedup:.2f}x"]
            for r in self.rows
        ]
        widths = [max(len(c) for c in column) for column in zip(header, *body)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

        lines = [f"- {c}" for c in self.conditions()] + [""]
        lines += [line(header), line(["-" * w for w in widths]), *map(line, body)]
        notes = [f"[{i}] {n}" for i, e in enumerate(self.engines) for n in e.notes]
        notes += [f"[{s.engine}] batch {s.batch} skipped: {s.reason}" for s in self.skipped]
        phases = [
            f"[{r.engine}] batch {r.batch} {r.label}: median "
            + ", ".join(f"{k} {_ms(v.median)} ms" for k, v in r.phases_ms.items())
            for r in self.rows if r.phases_ms
        ]
        if notes or phases:
            lines += ["", *(f"- {n}" for n in notes + phases)]
        return "\n".join(lines) + "\n"

    def write_json(self, path: str | os.PathLike) -> None:
        with atomic_path(check_output(path)) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def write_csv(self, path: str | os.PathLike) -> None:
        """One row per engine x batch x runner, skipped cells included (with the reason)."""
        stats = {f.name: f.name if f.name in ("count", "cv") else f"{f.name}_ms" for f in dataclasses.fields(Stats)}
        fields = ["engine", "path", "model", "backend", "format", "engine_precision", "device", "threads",
                  "batch", "runner", "precision", *stats.values(),
                  "unstable", "images_per_s", "speedup", "h2d_median_ms", "compute_median_ms",
                  "d2h_median_ms", "load_s", "build_s", "peak_host_rss_mb", "peak_gpu_mb", "skipped"]
        records = []
        for r in self.rows:
            record = {**self._engine_columns(r.engine), "batch": r.batch, "runner": r.runner,
                      "precision": r.precision, "unstable": r.latency_ms.unstable,
                      "images_per_s": r.images_per_s, "speedup": r.speedup,
                      "peak_host_rss_mb": r.peak_host_rss_mb, "peak_gpu_mb": r.peak_gpu_mb}
            record.update({column: getattr(r.latency_ms, stat) for stat, column in stats.items()})
            record.update({f"{k}_median_ms": v.median for k, v in r.phases_ms.items()})
            records.append(record)
        records += [{**self._engine_columns(s.engine), "batch": s.batch, "runner": "engine", "skipped": s.reason}
                    for s in self.skipped]
        with atomic_path(check_output(path)) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)

    def _engine_columns(self, index: int) -> dict[str, Any]:
        e = self.engines[index]
        return {"engine": e.name, "path": e.path, "model": e.model, "backend": e.backend, "format": e.format,
                "engine_precision": e.precision, "device": e.device_name, "threads": self.settings.threads,
                "load_s": e.load_seconds, "build_s": e.build_seconds}

    def write_markdown(self, path: str | os.PathLike) -> None:
        with atomic_path(check_output(path)) as tmp:
            tmp.write_text("# densenet-trt profile\n\n" + self.table())

    def plot(self, path: str | os.PathLike) -> None:
        """A PNG: latency (p50 solid, p90 dashed, p99 dotted) and throughput against batch
        size, one line per engine and per eager baseline."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise DenseNetTRTError("plot needs matplotlib: pip install matplotlib") from None
        path = check_output(path)
        figure = Figure(figsize=(13, 5.5), layout="constrained")
        FigureCanvasAgg(figure)
        latency, throughput = figure.subplots(1, 2)
        series: dict[tuple[int, str], list[Row]] = {}
        for r in self.rows:
            series.setdefault((r.engine, r.label), []).append(r)
        for n, ((engine, label), rows) in enumerate(series.items()):
            rows.sort(key=lambda r: r.batch)
            batches = [r.batch for r in rows]
            name = f"[{engine}] {self.engines[engine].name}" + ("" if label == "engine" else f" / {label}")
            color = f"C{n % 10}"
            for stat, style in (("median", "-"), ("p90", "--"), ("p99", ":")):
                latency.plot(batches, [getattr(r.latency_ms, stat) for r in rows], style, color=color,
                             marker="o" if stat == "median" else None)
            throughput.plot(batches, [r.images_per_s for r in rows], "-o", color=color, label=name)
        latency.set(ylabel="latency (ms)", yscale="log", title="latency: p50 solid, p90 dashed, p99 dotted")
        throughput.set(ylabel="images/s (from the median)", title="throughput")
        batches = sorted({r.batch for r in self.rows})
        for axes in (latency, throughput):
            axes.set(xlabel="batch size", xscale="log")
            axes.set_xticks(batches, [str(b) for b in batches])
            axes.minorticks_off()
            axes.grid(alpha=0.3)
        throughput.legend(fontsize="small")
        devices = sorted({e.device_name for e in self.engines})
        figure.suptitle(f"densenet-trt profile, {self.date_utc}, {', '.join(devices)}, "
                        f"{self.settings.threads} CPU threads", fontsize="medium")
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def check_output(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that a report can be written there (an existing file
    is replaced)."""
    return check_writable(path, force=True)


# ---------------------------------------------------------------------------------------------
# Profiling
# ---------------------------------------------------------------------------------------------


def profile(
    engines: Sequence[str | os.PathLike],
    *,
    batches: Iterable[int] = (1,),
    warmup: int | None = None,
    warmup_time: float | None = None,
    iterations: int | None = None,
    duration: float | None = None,
    vs: str = "eager",
    threads: int | None = None,
    cuda_graphs: bool = False,
    include_transfers: bool = False,
    gap: float = DEFAULT_GAP,
    outputs: Sequence[str | os.PathLike] = (),
    progress: Progress = quiet,
) -> ProfileReport:
    """Latency and throughput of each engine folder in ``engines`` at each of ``batches``.

    Args:
        warmup, warmup_time: warm-up rounds, or seconds of them (not timed); default 3 rounds.
        iterations, duration: timed rounds, or seconds of them; default 20 rounds.
        vs: ``"eager"``: also time eager PyTorch (same model and weights, made again from the
            manifest) in float32 and, where it can run it, the engine's precision, interleaved
            with the engine; ``"none"``: the engine alone.
        threads: torch's CPU threads (and the engines') for the run; default: torch's current.
        cuda_graphs: GPU engines: replay the engine from a CUDA graph.
        include_transfers: GPU engines: time the copies of input and output too.
        gap: seconds of pause before each timed CPU call (lets eager's OpenMP threads settle).
        outputs: report files to write, by suffix (.json, .csv, .md, .png); checked before
            measuring.
        progress: called with a line as each engine and batch size is measured.

    A batch size outside an engine's range is skipped (with the reason, in the report) unless
    nothing at all could run.
    """
    settings = _settings(batches, warmup, warmup_time, iterations, duration, vs, threads,
                         cuda_graphs, include_transfers, gap)
    paths = [_check_output_suffix(p) for p in outputs]
    if not engines:
        raise DenseNetTRTError("no engines to profile; give one or more engine folders")

    with torch_threads(settings.threads), _tf32_off():
        loaded: list[tuple[Engine, float]] = []
        references: list[torch.nn.Module] = []  # the eager models, made once per engine
        for path in engines:
            progress(f"loading {path}")
            start = time.perf_counter()
            engine = load(path, threads=settings.threads)
            loaded.append((engine, time.perf_counter() - start))
            _check_device_options(engine, settings)
            if settings.vs == "eager":
                references.append(engine_reference(
                    engine, "put the checkpoint back there for the eager baseline, or profile "
                    "without it (--vs none)"))
        plan, skipped = _plan(loaded, settings.batches)
        if not plan:
            reasons = "; ".join(s.reason for s in skipped)
            raise DenseNetTRTError(f"no batch size can run: {reasons}; choose batches within the engines' ranges")
        for s in skipped:
            progress(f"skip [{s.engine}] batch {s.batch}: {s.reason}")

        infos = [_engine_info(engine, seconds) for engine, seconds in loaded]
        inputs: dict[tuple[int, int, int], torch.Tensor] = {}
        rows: list[Row] = []
        for index, (engine, _) in enumerate(loaded):
            eager = _eager_runners(engine, references[index], infos[index].eager) if references else {}
            for n in plan.get(index, []):
                key = (n, engine.in_channels, engine.image_size)
                if key not in inputs:
                    inputs[key] = example_input(n, engine.image_size, engine.in_channels,
                                                seed=settings.seed + n)
                progress(f"[{index}] {engine.path.name}: batch {n}")
                cell = _measure(index, engine, eager, inputs[key], n, settings)
                for row in cell:
                    speed = "" if row.speedup is None else f", engine {row.speedup:.2f}x faster"
                    flag = " (unstable, rerun)" if row.latency_ms.unstable else ""
                    progress(f"  {row.label}: median {_ms(row.latency_ms.median)} ms, "
                             f"cv {row.latency_ms.cv:.1%}{flag}{speed}")
                rows.extend(cell)

    report = ProfileReport(
        date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        settings=settings,
        host={"cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": settings.threads,
              "python": platform.python_version(), "platform": platform.platform(),
              "torch": torch.__version__, "numpy": np.__version__, "densenet-trt": __version__},
        engines=infos,
        rows=rows,
        skipped=skipped,
    )
    writers = {".json": report.write_json, ".csv": report.write_csv, ".md": report.write_markdown,
               ".png": report.plot}
    for path in paths:
        writers[path.suffix.lower()](path)
        progress(f"wrote {path}")
    return report


def _settings(
    batches: Iterable[int], warmup: int | None, warmup_time: float | None, iterations: int | None,
    duration: float | None, vs: str, threads: int | None, cuda_graphs: bool, include_transfers: bool,
    gap: float,
) -> Settings:
    batches = tuple(batches)
    if not batches or any(not (_is_int(b) and b > 0) for b in batches):
        raise DenseNetTRTError(f"batches must be positive integers, got {list(batches)!r}")
    if warmup is not None and warmup_time is not None:
        raise DenseNetTRTError("give warmup (rounds) or warmup_time (seconds), not both")
    if warmup is not None and not (_is_int(warmup) and warmup >= 0):
        raise DenseNetTRTError(f"warmup must be a count of 0 or more, got {warmup!r}")
    if warmup_time is not None and not (_is_number(warmup_time) and warmup_time > 0):
        raise DenseNetTRTError(f"warmup_time must be a positive number of seconds, got {warmup_time!r}")
    if iterations is not None and duration is not None:
        raise DenseNetTRTError("give iterations or duration (seconds), not both")
    if iterations is not None and not (_is_int(iterations) and iterations > 0):
        raise DenseNetTRTError(f"iterations must be a positive integer, got {iterations!r}")
    if duration is not None and not (_is_number(duration) and duration > 0):
        raise DenseNetTRTError(f"duration must be a positive number of seconds, got {duration!r}")
    if vs not in ("eager", "none"):
        raise DenseNetTRTError(f"vs must be 'eager' or 'none', got {vs!r}")
    if threads is not None and not (_is_int(threads) and threads > 0):
        raise DenseNetTRTError(f"threads must be a positive integer, got {threads!r}")
    if not (_is_number(gap) and gap >= 0):
        raise DenseNetTRTError(f"gap must be 0 or more seconds, got {gap!r}")
    return Settings(
        batches=tuple(sorted(set(batches))),
        warmup=DEFAULT_WARMUP if warmup is None and warmup_time is None else warmup,
        warmup_time=warmup_time,
        iterations=DEFAULT_ITERATIONS if iterations is None and duration is None else iterations,
        duration=duration,
        vs=vs,
        threads=threads or torch.get_num_threads(),
        cuda_graphs=cuda_graphs,
        include_transfers=include_transfers,
        gap=float(gap),
        seed=secrets.randbelow(2**31),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_output_suffix(path: str | os.PathLike) -> Path:
    path = check_output(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DenseNetTRTError(f"{path}: cannot tell the report format; end the name with {', '.join(OUTPUT_SUFFIXES)}")
    return path


def _check_device_options(engine: Engine, settings: Settings) -> None:
    if engine.manifest["device"]["type"] == "cuda":
        return
    for flag in ("cuda_graphs", "include_transfers"):
        if getattr(settings, flag):
            raise DenseNetTRTError(
                f"{flag} applies to GPU engines; {engine.path} runs on the CPU: profile it without "
                f"--{flag.replace('_', '-')}"
            )


def _plan(loaded: list[tuple[Engine, float]], batches: tuple[int, ...]) -> tuple[dict[int, list[int]], list[Skipped]]:
    """The batch sizes each engine can run, and the cells skipped with the reason."""
    plan: dict[int, list[int]] = {}
    skipped = []
    for index, (engine, _) in enumerate(loaded):
        for n in batches:
            if engine.batch_min <= n <= engine.batch_max:
                plan.setdefault(index, []).append(n)
            else:
                skipped.append(Skipped(index, n, f"batch {n} is outside {engine.path.name}'s range "
                                                 f"{engine.batch_min}..{engine.batch_max}"))
    return plan, skipped


def _engine_info(engine: Engine, load_seconds: float) -> EngineInfo:
    m = engine.manifest
    device = m["device"]["type"]
    eager, notes = ["fp32"], []
    if m["precision"] != "fp32":
        if m["precision"] in torch_precisions(device):
            eager.append(m["precision"])
        else:
            reason = _EAGER_CANNOT.get((device, m["precision"]), "PyTorch cannot run it here")
            notes.append(f"eager {m['precision']} is not run on {device}: {reason}; compared with eager fp32 only")
    b = m["batch"]
    return EngineInfo(
        path=str(engine.path), name=engine.path.name, model=m["model"]["name"], backend=m["backend"],
        format=m["format"], precision=m["precision"], batch_range=f"{b['min']}:{b['opt']}:{b['max']}",
        image_size=m["image_size"], device=device_info(device), versions=dict(m["versions"]),
        build_seconds=(m.get("build") or {}).get("seconds"), load_seconds=round(load_seconds, 4),
        eager=eager, notes=notes,
    )


def _eager_runners(
    engine: Engine, net: torch.nn.Module, precisions: list[str]
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Eager PyTorch runners of ``net`` (the engine's model and weights), one per precision, on
    the engine's device."""
    device = engine.manifest["device"]["type"]
    runners = {}
    for precision in precisions:
        dtype = DTYPES[precision]
        model = copy.deepcopy(net).to(device, dtype)

        def run(x: torch.Tensor, model: torch.nn.Module = model, dtype: torch.dtype = dtype) -> torch.Tensor:
            with torch.no_grad():
                return model(x.to(dtype))

        runners[precision] = run
    return runners


def _measure(
    index: int,
    engine: Engine,
    eager: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    batch: int,
    settings: Settings,
) -> list[Row]:
    """Rows of one cell: each eager baseline and the engine, interleaved."""
    on_gpu = engine.manifest["device"]["type"] == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        eager_timers = [cuda_timer(run, x, include_transfers=settings.include_transfers)
                        for run in eager.values()]
        try:
            engine_timer = cuda_timer(engine.run, x, include_transfers=settings.include_transfers,
                                      cuda_graphs=settings.cuda_graphs)
        except RuntimeError as e:
            if not settings.cuda_graphs:
                raise
            raise DenseNetTRTError(
                f"{engine.path} ({engine.backend}) cannot be captured in a CUDA graph ({e}); "
                "profile it without --cuda-graphs"
            ) from None
    else:
        eager_timers = [cpu_timer(lambda run=run: run(x)) for run in eager.values()]
        engine_timer = cpu_timer(lambda: engine.run(x))
    samples = interleave(
        [*eager_timers, engine_timer], warmup=settings.warmup or 0, warmup_time=settings.warmup_time,
        iterations=settings.iterations, duration=settings.duration, gap=0.0 if on_gpu else settings.gap,
    )
    peak_host = _peak_rss_mb()
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None
    engine_ms = [s["latency"] for s in samples[-1]]

    def row(runner: str, precision: str, measured: list[dict[str, float]]) -> Row:
        latency = [s["latency"] for s in measured]
        phases = {k: summarize([s[k] for s in measured]) for k in measured[0] if k != "latency"}
        speedup = None if runner == "engine" else paired_speedup(latency, engine_ms)
        return Row(index, batch, runner, precision, summarize(latency), phases, speedup, peak_host, peak_gpu)

    return [*(row("eager", p, s) for p, s in zip(eager, samples)), row("engine", engine.precision, samples[-1])]


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)


@contextlib.contextmanager
def _tf32_off() -> Iterator[None]:
    """Keep cuDNN convolutions in true float32 (PyTorch lets them round to TF32 by default), so
    that eager fp32 on a GPU is the fp32 it says it is."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before
