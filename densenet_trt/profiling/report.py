"""The report of a ``profile`` run: the settings, the engines, one row per runner x batch x mode,
the skipped cells, the slowest layers; and its writers.

Two modes, as trtexec and OpenVINO's benchmark_app report them:

- latency: one request at a time, each after a pause (``gap``), the runners interleaved in
  rounds (eager, engine A, engine B, eager, ...); ``images_per_s`` is derived, batch / median.
- throughput: measured, images completed / wall time, back to back (one request at a time, no
  pause) and, where the runtime offers it, with several requests in flight.

Eager PyTorch is the baseline: one per model, input size and device for the whole run, timed
in the same rounds as every engine of that model, so each engine's speedup is the median of
its paired ratios eager/engine against the same eager samples.

The report (``ProfileReport``) is written as JSON, CSV, Markdown or a PNG plot. The JSON::

    {
      "schema": "densenet-trt/profile",
      "schema_version": 2,
      "date_utc": "2025-01-31T12:00:00+00:00",
      "settings": {                         # what was asked, defaults resolved
        "batches": [1, 8], "warmup": 3, "warmup_time": null,     # one of warmup / warmup_time
        "iterations": null, "duration": 5.0,                     # one of iterations / duration
        "vs": "eager",                      # or "none"
        "threads": 8,                       # torch (and engine) CPU threads during the run
        "cuda_graphs": false, "include_transfers": false,
        "gap": 0.2,                         # seconds of pause before each latency call (CPU)
        "seed": 123456,                     # of the random inputs (torch.Generator)
        "mode": "both",                     # "latency", "throughput" or "both"
        "requests": null,                   # requests in flight; null: the runtime's choice
        "layers": 0                         # slowest layers listed per engine and batch
      },
      "host": {"cpu": "...", "cpu_count": 16, "threads": 8, "python": "3.12.3",
               "platform": "...", "torch": "2.14.1", "numpy": "2.3.0", "densenet-trt": "0.1.0",
               "eager": ["torch.no_grad", "cudnn.benchmark=True (CUDA)"]},  # how eager is tuned
      "engines": [{                         # rows refer to these by index
        "path": "engines/x", "name": "x", "model": "densenet121", "backend": "onnxruntime",
        "format": "onnx", "precision": "fp32", "batch_range": "1:8:32", "image_size": 224,
        "device": {"type": "cpu", "cpu": "...", "cpu_count": 16, "gpu": null},
        "versions": {"densenet-trt": "0.1.0", "torch": "2.14.1", "onnxruntime": "1.23.0"},
        "build_seconds": 41.2, "load_seconds": 0.31,
        "eager": ["fp32"],                  # eager precisions its speedup is paired with
        "notes": ["eager fp16 is not run on cpu: ..."],
        "baseline": "densenet121 224x224 cpu"  # the eager baseline it is measured against
      }],
      "rows": [{                            # one per runner x batch x mode
        "engine": 0,                        # null: eager PyTorch, the baseline
        "baseline": "densenet121 224x224 cpu",
        "batch": 8, "mode": "latency",      # or "throughput"
        "requests": 1,                      # requests in flight
        "runner": "engine",                 # or "eager" (PyTorch, same model and weights)
        "precision": "fp32",                # the runner's precision
        "how": "",                          # throughput: how requests were kept in flight
        "latency_ms": {"count": 20, "min": .., "mean": .., "median": .., "p90": .., "p95": ..,
                       "p99": .., "max": .., "std": .., "cv": ..},   # of each request
        "phases_ms": {"h2d": {...}, "compute": {...}, "d2h": {...}},  # include_transfers, else {}
        "images_per_s": 812.5,              # latency: batch / median; throughput: measured
        "wall_s": 5.01,                     # throughput: the measured wall time; latency: null
        "samples": 20,                      # derived: latency_ms.count, the timed requests
        "too_few_samples": false,           # derived: fewer than stats.MIN_SAMPLES (10): its cv
                                            # and p99 are not statistics (reports print "n<10")
        "unstable": false,                  # derived: cv > 0.05 ("unstable, rerun"); null where
                                            # too_few_samples
        "speedup": {"fp32": 2.1},           # engine latency rows: median of the paired ratios
                                            # eager/engine, per eager precision
        "peak_host_rss_mb": 950.1,          # the process's peak RSS so far (getrusage)
        "device_mb": null                   # GPU: device memory of this runner (load + one call)
      }],
      "skipped": [{"engine": 0, "batch": 64, "reason": "batch 64 is outside ..."}],
      "layers": [{"engine": 0, "batch": 1, "source": "OpenVINO PERF_COUNT", "note": "",
                  "total_ms": 3.2, "layers": [{"name": "...", "type": "Convolution", "ms": 0.4}]}]
    }

Times are milliseconds; ``std`` is the population standard deviation and ``cv`` = std / mean;
percentiles interpolate linearly (numpy's default).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Any, Mapping

from ..engine.artifact import atomic_path
from ..defaults import (PROFILE_BATCH_SIZE, PROFILE_DURATION, PROFILE_GAP, PROFILE_LAYERS, PROFILE_MODE, PROFILE_VS,
                       PROFILE_WARMUP)
from ..errors import DenseNetTRTError
from ..engine.manifest import PROFILE, write_document
from .report_text import plot, report_text
from .stats import Stats

MODES = ("both", "latency", "throughput")
# Bounds of a profile run: rounds (warmup, iterations), seconds (warmup_time, duration) and the
# pause before each timed CPU call (gap). Beyond them a run would not end in any useful time.
MAX_ROUNDS = 1_000_000
MAX_SECONDS = 3600.0
MAX_GAP = 10.0
MAX_REQUESTS = 64


# The keys of a JSON row derived from its latency_ms, written for readers, not read back.
DERIVED = ("samples", "too_few_samples", "unstable")


def _derived(stats: Stats) -> dict[str, Any]:
    return {"samples": stats.count, "too_few_samples": not stats.enough, "unstable": stats.unstable}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``profile`` was asked, validated, defaults resolved."""

    batches: tuple[int, ...] = (PROFILE_BATCH_SIZE,)
    warmup: int | None = PROFILE_WARMUP
    warmup_time: float | None = None
    iterations: int | None = None
    duration: float | None = PROFILE_DURATION
    vs: str = PROFILE_VS
    threads: int = 1
    cuda_graphs: bool = False
    include_transfers: bool = False
    gap: float = PROFILE_GAP
    seed: int = 0
    mode: str = PROFILE_MODE
    requests: int | None = None
    layers: int = PROFILE_LAYERS

    @property
    def amount(self) -> str:
        return f"{self.iterations} iterations" if self.iterations is not None else f"{self.duration:g} s"

    @property
    def warmup_amount(self) -> str:
        return f"{self.warmup} warm-up rounds" if self.warmup is not None else f"{self.warmup_time:g} s warm-up"


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
    baseline: str = ""

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
    """One runner (an engine, or eager PyTorch in one precision) at one batch size in one mode."""

    engine: int | None  # None: eager PyTorch, the run's baseline for ``baseline``
    baseline: str
    batch: int
    mode: str  # "latency" or "throughput"
    requests: int
    runner: str
    precision: str
    how: str
    latency_ms: Stats
    phases_ms: dict[str, Stats]
    images_per_s: float
    wall_s: float | None
    speedup: dict[str, float]
    peak_host_rss_mb: float
    device_mb: float | None

    @property
    def label(self) -> str:
        return f"{self.runner} {self.precision}"


@dataclasses.dataclass(frozen=True)
class Skipped:
    engine: int
    batch: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    type: str
    ms: float


@dataclasses.dataclass(frozen=True)
class LayerTimes:
    """The slowest layers of one engine at one batch size, as its runtime's profiler timed them
    (``source``); where the runtime offers none, ``note`` says so and ``layers`` is empty."""

    engine: int
    batch: int
    source: str
    note: str
    total_ms: float
    layers: list[Layer]


@dataclasses.dataclass(frozen=True)
class ProfileReport:
    """The measurements of one ``profile`` call and the conditions they were taken in."""

    date_utc: str
    settings: Settings
    host: dict[str, Any]
    engines: list[EngineInfo]
    rows: list[Row]
    skipped: list[Skipped]
    layers: list[LayerTimes] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in this module's docstring."""
        return {
            "schema": PROFILE.schema,
            "schema_version": PROFILE.version,
            "date_utc": self.date_utc,
            "settings": {**dataclasses.asdict(self.settings), "batches": list(self.settings.batches)},
            "host": dict(self.host),
            "engines": [dataclasses.asdict(e) for e in self.engines],
            "rows": [{**dataclasses.asdict(r), **_derived(r.latency_ms)} for r in self.rows],
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "layers": [dataclasses.asdict(t) for t in self.layers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileReport:
        if data.get("schema") != PROFILE.schema or data.get("schema_version") != PROFILE.version:
            raise DenseNetTRTError(
                f"not a {PROFILE.schema} version {PROFILE.version} report (schema {data.get('schema')!r}, "
                f"version {data.get('schema_version')!r}); {PROFILE.fix} with this densenet-trt"
            )
        rows = []
        for r in data["rows"]:
            r = {k: v for k, v in r.items() if k not in DERIVED}
            rows.append(Row(**{
                **r,
                "latency_ms": Stats(**r["latency_ms"]),
                "phases_ms": {k: Stats(**v) for k, v in r["phases_ms"].items()},
            }))
        layers = [LayerTimes(**{**t, "layers": [Layer(**x) for x in t["layers"]]}) for t in data["layers"]]
        return cls(
            date_utc=data["date_utc"],
            settings=Settings(**{**data["settings"], "batches": tuple(data["settings"]["batches"])}),
            host=dict(data["host"]),
            engines=[EngineInfo(**e) for e in data["engines"]],
            rows=rows,
            skipped=[Skipped(**s) for s in data["skipped"]],
            layers=layers,
        )

    def conditions(self) -> list[str]:
        """One line for the run, then one per engine."""
        s, h = self.settings, self.host
        baseline = "eager PyTorch in the same rounds" if s.vs == "eager" else "no eager baseline"
        gpu = f"; CUDA graphs {'on' if s.cuda_graphs else 'off'}, transfers {'in' if s.include_transfers else 'out'}"
        eager = f"; eager tuned as users run it: {', '.join(h['eager'])}" if s.vs == "eager" and h.get("eager") else ""
        run = (
            f"{self.date_utc}; {h['cpu']} ({h['cpu_count']} cores), {h['threads']} torch threads; "
            f"python {h['python']}, torch {h['torch']}, densenet-trt {h['densenet-trt']}; "
            f"each measurement {s.amount} after {s.warmup_amount}, {baseline}{eager}{gpu}"
        )
        return [run, *(f"[{i}] {e.conditions()}" for i, e in enumerate(self.engines))]

    def table(self) -> str:
        """The conditions, a table per mode and the slowest layers, as Markdown (aligned, for
        the terminal too)."""
        return report_text(self)

    def write_json(self, path: str | os.PathLike, force: bool = False) -> None:
        body = {k: v for k, v in self.to_dict().items() if k not in ("schema", "schema_version")}
        write_document(path, body, PROFILE, force)

    def write_csv(self, path: str | os.PathLike, force: bool = False) -> None:
        """One row per runner x batch x mode, skipped cells included (with the reason); ``count``
        is its samples, and cv and p99_ms are empty where they are too few (``too_few_samples``)."""
        stats = {f.name: f.name if f.name in ("count", "cv") else f"{f.name}_ms" for f in dataclasses.fields(Stats)}
        fields = ["engine", "path", "model", "backend", "format", "engine_precision", "device", "threads",
                  "baseline", "batch", "mode", "requests", "runner", "precision", "how", *stats.values(),
                  "too_few_samples", "unstable", "images_per_s", "wall_s", "speedup", "h2d_median_ms", "compute_median_ms",
                  "d2h_median_ms", "load_s", "build_s", "peak_host_rss_mb", "device_mb", "skipped"]
        records = [self._csv_record(r, stats) for r in self.rows]
        records += [{**self._engine_columns(s.engine), "batch": s.batch, "runner": "engine", "skipped": s.reason}
                    for s in self.skipped]
        with atomic_path(path, force=force) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)

    def _csv_record(self, r: Row, stats: dict[str, str]) -> dict[str, Any]:
        """The CSV columns of one row; ``stats``: the column of each field of ``Stats``."""
        engine = {} if r.engine is None else self._engine_columns(r.engine)
        record = {"threads": self.settings.threads, **engine, "baseline": r.baseline, "batch": r.batch,
                  "mode": r.mode, "requests": r.requests, "runner": r.runner, "precision": r.precision,
                  "how": r.how, "too_few_samples": not r.latency_ms.enough, "unstable": r.latency_ms.unstable,
                  "images_per_s": r.images_per_s,
                  "wall_s": r.wall_s, "speedup": " ".join(f"{k}:{v:.4g}" for k, v in r.speedup.items()),
                  "peak_host_rss_mb": r.peak_host_rss_mb, "device_mb": r.device_mb}
        record.update({column: getattr(r.latency_ms, stat) for stat, column in stats.items()
                       if r.latency_ms.enough or stat not in ("cv", "p99")})
        record.update({f"{k}_median_ms": v.median for k, v in r.phases_ms.items()})
        return record

    def _engine_columns(self, index: int) -> dict[str, Any]:
        e = self.engines[index]
        return {"engine": e.name, "path": e.path, "model": e.model, "backend": e.backend, "format": e.format,
                "engine_precision": e.precision, "device": e.device_name, "threads": self.settings.threads,
                "load_s": e.load_seconds, "build_s": e.build_seconds}

    def write_markdown(self, path: str | os.PathLike, force: bool = False) -> None:
        with atomic_path(path, force=force) as tmp:
            tmp.write_text("# densenet-trt profile\n\n" + self.table())

    def plot(self, path: str | os.PathLike, force: bool = False) -> None:
        """A PNG: latency (p50 solid, p90 dashed, p99 dotted) and measured throughput against
        batch size, one line per engine and per eager baseline."""
        plot(self, path, force)
