"""The report of a load sweep (``loadtest``) and its writers: the table, JSON, CSV, Markdown and
a PNG plot, as the profile's report has. The JSON::

    {
      "schema": "densenet-trt/loadtest", "schema_version": 1,
      "date_utc": "2026-12-04T08:00:00+00:00",
      "settings": {"url": "grpc://127.0.0.1:8001", "model": "e", "batch": 1,
                   "concurrencies": [1, 2, 4, 8], "duration": 10.0, "warmup": 2.0, "seed": 0,
                   "engine": "engines/e"},         # the engine run in-process; null: none
      "host": {"cpu": "...", "cpu_count": 16, "python": "3.11.7", "densenet-trt": "0.1.0",
               "tritonclient": "2.51.0"},
      "rows": [{"runner": "server",               # or "in-process"
                "concurrency": 4, "batch": 1,
                "latency_ms": {"count": 812, "min": .., "median": .., "p90": .., "p99": .., ...},
                "images_per_s": 190.2, "wall_s": 10.0, "failed": 0,
                "queue_ms": 1.2, "compute_ms": 9.8,   # per request, from Triton's statistics
                "server_batch": 2.7}]                 # inferences / executions (dynamic batching)
    }

Times are milliseconds; the latency is the client's, request sent to response read.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
import platform
from typing import Any

from ..engine.artifact import atomic_path
from ..engine.load import load
from ..defaults import LOADTEST_CONCURRENCIES, LOADTEST_DURATION, LOADTEST_WAIT, LOADTEST_WARMUP
from .loadtest import Client, LoadRow, sweep
from ..machine import cpu_name
from ..progress import Progress, quiet
from .report_text import save_png, style_pair, two_axes
from ..engine.manifest import Document, write_document
from .stats import TAIL_SAMPLES, Stats
from ..version import __version__

LOADTEST = Document("densenet-trt/loadtest", 1, "run loadtest again")


def loadtest(url: str, model: str, engine: str | os.PathLike | None = None, *,
             concurrencies: tuple[int, ...] = LOADTEST_CONCURRENCIES, batch: int = 1,
             duration: float = LOADTEST_DURATION, warmup: float = LOADTEST_WARMUP, seed: int = 0,
             threads: int | None = None, wait: float = LOADTEST_WAIT, progress: Progress = quiet) -> LoadReport:
    """The load sweep (``loadtest.sweep``) of ``model`` served at ``url``, and of ``engine`` (a
    built engine's path) in-process where given, as a report; ``wait``: seconds to wait for the
    model to be ready."""
    from importlib.metadata import version

    client = Client(url, model, wait)
    loaded = None if engine is None else load(engine, threads=threads)
    rows = sweep(client, loaded, concurrencies=tuple(concurrencies), batch=batch, duration=duration,
                 warmup=warmup, seed=seed, progress=progress)
    settings = {"url": url, "model": model, "batch": batch, "concurrencies": list(concurrencies),
                "duration": duration, "warmup": warmup, "seed": seed,
                "engine": None if engine is None else os.fspath(engine)}
    host = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "densenet-trt": __version__, "tritonclient": version("tritonclient")}
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return LoadReport(date, settings, host, rows)


@dataclasses.dataclass(frozen=True)
class LoadReport:
    date_utc: str
    settings: dict[str, Any]
    host: dict[str, Any]
    rows: list[LoadRow]

    def to_dict(self) -> dict[str, Any]:
        return {"date_utc": self.date_utc, "settings": self.settings, "host": self.host,
                "rows": [dataclasses.asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadReport:
        rows = [LoadRow(**{**r, "latency_ms": Stats(**r["latency_ms"])}) for r in data["rows"]]
        return cls(data["date_utc"], dict(data["settings"]), dict(data["host"]), rows)

    def conditions(self) -> str:
        s, h = self.settings, self.host
        engine = f"; in-process: {s['engine']}" if s.get("engine") else ""
        return (f"{self.date_utc}; {h['cpu']} ({h['cpu_count']} cores); python {h['python']}, tritonclient "
                f"{h['tritonclient']}, densenet-trt {h['densenet-trt']}; {s['url']} model {s['model']}, batch "
                f"{s['batch']}, each step {s['duration']:g} s after {s['warmup']:g} s of warm-up{engine}")

    def table(self) -> str:
        """The conditions and one row per runner and concurrency, as Markdown."""
        header = ["runner", "concurrency", "requests", "failed", "images/s", "p50 ms", "p90 ms", "p99 ms",
                  "queue ms", "compute ms", "server batch"]
        body = [[r.runner, str(r.concurrency), str(r.latency_ms.count), str(r.failed), f"{r.images_per_s:.1f}",
                 _ms(r.latency_ms.median), _ms(r.latency_ms.p90),
                 _ms(r.latency_ms.p99) + ("" if r.latency_ms.tail_trusted else "*"),
                 _maybe(r.queue_ms), _maybe(r.compute_ms),
                 "" if r.server_batch is None else f"{r.server_batch:.2f}"] for r in self.rows]
        widths = [max(len(c) for c in column) for column in zip(header, *body)]
        lines = [f"- {self.conditions()}", ""]
        for cells in (header, ["-" * w for w in widths], *body):
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
        lines += ["", "Latency is the client's (request sent to response read); queue and compute ms are "
                      "per request from Triton's statistics; server batch: the mean batch the dynamic "
                      "batcher ran."]
        if any(not r.latency_ms.tail_trusted for r in self.rows):
            lines.append(f"* fewer than {TAIL_SAMPLES} requests: p99 is (nearly) the slowest one, not a tail.")
        return "\n".join(lines) + "\n"

    def write_json(self, path: str | os.PathLike, force: bool = False) -> None:
        write_document(path, self.to_dict(), LOADTEST, force)

    def write_csv(self, path: str | os.PathLike, force: bool = False) -> None:
        stats = [f.name for f in dataclasses.fields(Stats)]
        fields = ["url", "model", "runner", "concurrency", "batch", "images_per_s", "wall_s", "failed",
                  *(s if s in ("count", "cv") else f"{s}_ms" for s in stats), "queue_ms", "compute_ms",
                  "server_batch"]
        with atomic_path(path, force=force) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for r in self.rows:
                record = {k: v for k, v in dataclasses.asdict(r).items() if k != "latency_ms"}
                record.update({s if s in ("count", "cv") else f"{s}_ms": getattr(r.latency_ms, s) for s in stats})
                writer.writerow({"url": self.settings["url"], "model": self.settings["model"], **record})

    def write_markdown(self, path: str | os.PathLike, force: bool = False) -> None:
        with atomic_path(path, force=force) as tmp:
            tmp.write_text("# densenet-trt loadtest\n\n" + self.table())

    def plot(self, path: str | os.PathLike, force: bool = False) -> None:
        """A PNG: latency (p50 solid, p90 dashed, p99 dotted) and throughput against concurrency,
        one colour per runner."""
        figure, latency, throughput = two_axes()
        for n, runner in enumerate(dict.fromkeys(r.runner for r in self.rows)):
            rows = sorted((r for r in self.rows if r.runner == runner), key=lambda r: r.concurrency)
            x = [r.concurrency for r in rows]
            for stat, style in (("median", "-"), ("p90", "--"), ("p99", ":")):
                latency.plot(x, [getattr(r.latency_ms, stat) for r in rows], style, color=f"C{n}",
                             marker="o" if stat == "median" else None)
            throughput.plot(x, [r.images_per_s for r in rows], "-o", color=f"C{n}", label=runner)
        style_pair(latency, throughput, "concurrent requests", sorted({r.concurrency for r in self.rows}),
                   "images/s (measured)")
        figure.suptitle(f"densenet-trt loadtest, {self.date_utc}, {self.settings['model']} at {self.settings['url']}, "
                        f"batch {self.settings['batch']}", fontsize="medium")
        save_png(figure, path, force)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _maybe(value: float | None) -> str:
    return "" if value is None else _ms(value)
