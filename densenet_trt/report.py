"""The report of a ``profile`` run: the settings, the engines, one row per engine x batch x runner,
the skipped cells; and its writers.

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

import csv
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from .artifact import atomic_path, check_writable, writable_folder
from .errors import DenseNetTRTError
from .manifest import PROFILE, write_document
from .stats import Stats

DEFAULT_WARMUP = 3
DEFAULT_ITERATIONS = 20
DEFAULT_GAP = 0.2
# Bounds of a profile run: rounds (warmup, iterations), seconds (warmup_time, duration) and the
# pause before each timed CPU call (gap). Beyond them a run would not end in any useful time.
MAX_ROUNDS = 1_000_000
MAX_SECONDS = 3600.0
MAX_GAP = 10.0


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
            "schema": PROFILE.schema,
            "schema_version": PROFILE.version,
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
        if data.get("schema") != PROFILE.schema or data.get("schema_version") != PROFILE.version:
            raise DenseNetTRTError(
                f"not a {PROFILE.schema} version {PROFILE.version} report (schema {data.get('schema')!r}, "
                f"version {data.get('schema_version')!r}); {PROFILE.fix} with this densenet-trt"
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
        body = [_table_cells(r) for r in self.rows]
        widths = [max(len(c) for c in column) for column in zip(header, *body)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

        lines = [f"- {c}" for c in self.conditions()] + [""]
        lines += [line(header), line(["-" * w for w in widths]), *map(line, body)]
        notes = self._notes()
        if notes:
            lines += ["", *(f"- {n}" for n in notes)]
        return "\n".join(lines) + "\n"

    def _notes(self) -> list[str]:
        """The lines under the table: the engines' notes, the skipped cells, and the median of
        each phase (with transfers)."""
        notes = [f"[{i}] {n}" for i, e in enumerate(self.engines) for n in e.notes]
        notes += [f"[{s.engine}] batch {s.batch} skipped: {s.reason}" for s in self.skipped]
        phases = [
            f"[{r.engine}] batch {r.batch} {r.label}: median "
            + ", ".join(f"{k} {_ms(v.median)} ms" for k, v in r.phases_ms.items())
            for r in self.rows if r.phases_ms
        ]
        return notes + phases

    def write_json(self, path: str | os.PathLike) -> None:
        body = {k: v for k, v in self.to_dict().items() if k not in ("schema", "schema_version")}
        write_document(check_output(path), body, PROFILE)

    def write_csv(self, path: str | os.PathLike) -> None:
        """One row per engine x batch x runner, skipped cells included (with the reason)."""
        stats = {f.name: f.name if f.name in ("count", "cv") else f"{f.name}_ms" for f in dataclasses.fields(Stats)}
        fields = ["engine", "path", "model", "backend", "format", "engine_precision", "device", "threads",
                  "batch", "runner", "precision", *stats.values(),
                  "unstable", "images_per_s", "speedup", "h2d_median_ms", "compute_median_ms",
                  "d2h_median_ms", "load_s", "build_s", "peak_host_rss_mb", "peak_gpu_mb", "skipped"]
        records = [self._csv_record(r, stats) for r in self.rows]
        records += [{**self._engine_columns(s.engine), "batch": s.batch, "runner": "engine", "skipped": s.reason}
                    for s in self.skipped]
        with atomic_path(check_output(path)) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(records)

    def _csv_record(self, r: Row, stats: dict[str, str]) -> dict[str, Any]:
        """The CSV columns of one row; ``stats``: the column of each field of ``Stats``."""
        record = {**self._engine_columns(r.engine), "batch": r.batch, "runner": r.runner,
                  "precision": r.precision, "unstable": r.latency_ms.unstable,
                  "images_per_s": r.images_per_s, "speedup": r.speedup,
                  "peak_host_rss_mb": r.peak_host_rss_mb, "peak_gpu_mb": r.peak_gpu_mb}
        record.update({column: getattr(r.latency_ms, stat) for stat, column in stats.items()})
        record.update({f"{k}_median_ms": v.median for k, v in r.phases_ms.items()})
        return record

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
        self._plot_lines(latency, throughput)
        self._style_axes(latency, throughput)
        devices = sorted({e.device_name for e in self.engines})
        figure.suptitle(f"densenet-trt profile, {self.date_utc}, {', '.join(devices)}, "
                        f"{self.settings.threads} CPU threads", fontsize="medium")
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)

    def _plot_lines(self, latency: Any, throughput: Any) -> None:
        """On the two axes, one colour per engine and per eager baseline: its latency percentiles
        and its throughput against batch size."""
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

    def _style_axes(self, latency: Any, throughput: Any) -> None:
        """Titles, labels, log scales, the batch sizes as ticks, grids and the legend."""
        latency.set(ylabel="latency (ms)", yscale="log", title="latency: p50 solid, p90 dashed, p99 dotted")
        throughput.set(ylabel="images/s (from the median)", title="throughput")
        batches = sorted({r.batch for r in self.rows})
        for axes in (latency, throughput):
            axes.set(xlabel="batch size", xscale="log")
            axes.set_xticks(batches, [str(b) for b in batches])
            axes.minorticks_off()
            axes.grid(alpha=0.3)
        throughput.legend(fontsize="small")


def _table_cells(r: Row) -> list[str]:
    """One row of the table."""
    return [f"[{r.engine}]", str(r.batch), r.label, _ms(r.latency_ms.median), _ms(r.latency_ms.p90),
            _ms(r.latency_ms.p99), _ms(r.latency_ms.min), _ms(r.latency_ms.max),
            f"{r.latency_ms.cv:.1%}" + (" unstable, rerun" if r.latency_ms.unstable else ""),
            f"{r.images_per_s:.1f}", "" if r.speedup is None else f"{r.speedup:.2f}x"]


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def check_output(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that a report can be written there (an existing file
    is replaced; its folder takes a new file, which permission bits alone do not tell root)."""
    path = check_writable(path, force=True)
    writable_folder(path.parent, "write the report elsewhere", create=False)
    return path

