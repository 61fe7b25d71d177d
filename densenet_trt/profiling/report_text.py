"""A profile report as text (the conditions, a table per mode, the notes, the slowest layers) and
as a PNG plot."""

from __future__ import annotations

import os
import textwrap
from typing import Any

from ..engine.artifact import atomic_path
from ..errors import DenseNetTRTError
from .stats import MIN_SAMPLES, TAIL_SAMPLES, TOO_FEW

# The report's types (report.py imports this module): ProfileReport and Row.
ProfileReport = Any
Row = Any

LATENCY = "latency"
THROUGHPUT = "throughput"
# Why a latency speedup and a throughput ratio of the same runners differ: said under the tables
# and on the plot.
SPEEDUPS = ("latency and throughput answer different questions: a latency speedup is the median "
            "of paired ratios eager/engine, one request at a time after a pause; throughput is "
            "images completed per second back to back, with each runner's requests in flight (the "
            "'in flight' column: an engine may keep several, eager keeps 1), so an engine faster "
            "per request can complete fewer images per second, e.g. at large batches where eager's "
            "threads already keep every core busy")


def report_text(report: ProfileReport) -> str:
    """The conditions, the latency and throughput tables, their notes and the slowest layers."""
    lines = [f"- {c}" for c in report.conditions()]
    latency = [r for r in report.rows if r.mode == LATENCY]
    throughput = [r for r in report.rows if r.mode == THROUGHPUT]
    if latency:
        pause = f"each after a {report.settings.gap:g} s pause on the CPU" if report.settings.gap else "no pause"
        lines += ["", f"Latency: one request at a time, {pause}; images/s = batch / median.", ""]
        lines += _table(*_latency_table(report, latency))
    if throughput:
        lines += ["", "Throughput: measured, images completed / wall time; back to back (1 in flight) "
                      "and with several requests in flight where the runtime offers it.", ""]
        lines += _table(*_throughput_table(report, throughput))
    notes = _notes(report)
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    for times in report.layers:
        lines += ["", *_layer_lines(report, times)]
    return "\n".join(lines) + "\n"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in column) for column in zip(header, *body)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return [line(header), line(["-" * w for w in widths]), *map(line, body)]


def _who(report: ProfileReport, r: Row) -> tuple[str, str]:
    """The engine and runner cells of a row: eager rows name their baseline where the run has
    more than one."""
    if r.engine is not None:
        return f"[{r.engine}]", r.label
    several = len({row.baseline for row in report.rows}) > 1
    return "eager", r.label + (f" ({r.baseline})" if several else "")


def _with_device_mb(header: list[str], body: list[list[str]], rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """The table with a column of each runner's device memory, where any was measured (GPU)."""
    if any(r.device_mb is not None for r in rows):
        header = [*header, "device MiB"]
        body = [[*cells, "" if r.device_mb is None else f"{r.device_mb:.0f}"] for cells, r in zip(body, rows)]
    return header, body


def _latency_table(report: ProfileReport, rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["engine", "batch", "runner", "n", "median ms", "p90 ms", "p99 ms", "min ms", "max ms", "cv",
              "images/s", "speedup vs eager (paired)"]
    body = []
    for r in rows:
        s = r.latency_ms
        speedup = ", ".join(f"{v:.2f}x vs {k}" for k, v in r.speedup.items())
        cv = TOO_FEW if not s.enough else f"{s.cv:.1%}" + (" unstable, rerun" if s.unstable else "")
        body.append([*_who(report, r)[:1], str(r.batch), _who(report, r)[1], str(s.count), _ms(s.median),
                     _ms(s.p90), _p99(s), _ms(s.min), _ms(s.max), cv, f"{r.images_per_s:.1f}", speedup])
    return _with_device_mb(header, body, rows)


def _p99(s: Any) -> str:
    """p99, marked where fewer than TAIL_SAMPLES make it (nearly) the largest sample, and not
    given at all from fewer than MIN_SAMPLES."""
    if not s.enough:
        return TOO_FEW
    return _ms(s.p99) + ("" if s.tail_trusted else "*")


def _throughput_table(report: ProfileReport, rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["engine", "batch", "runner", "in flight", "images/s", "n", "wall s", "median ms",
              "p99 ms", "how"]
    body = []
    for r in rows:
        s = r.latency_ms
        engine, runner = _who(report, r)
        body.append([engine, str(r.batch), runner, str(r.requests), f"{r.images_per_s:.1f}", str(s.count),
                     f"{r.wall_s:.2f}", _ms(s.median), _p99(s), r.how])
    return _with_device_mb(header, body, rows)


def _notes(report: ProfileReport) -> list[str]:
    """The lines under the tables: what p99 is made of, the engines' notes, the skipped cells,
    and the median of each phase (with transfers)."""
    notes = ["n: samples, each a timed request (latency: one per round; throughput: those completed)"]
    if any(not r.latency_ms.enough for r in report.rows):
        notes.append(f"{TOO_FEW}: from fewer than {MIN_SAMPLES} samples no CV or p99 is given, and no "
                     "'unstable' verdict: measure longer (--duration or --iterations) for them")
    if any(r.latency_ms.enough and not r.latency_ms.tail_trusted for r in report.rows):
        notes.append(f"* p99 of fewer than {TAIL_SAMPLES} samples is (nearly) the largest sample, not a "
                     "tail you can trust: measure longer (--duration) for one")
    if {r.mode for r in report.rows} == {LATENCY, THROUGHPUT} and any(r.engine is None for r in report.rows):
        notes.append(f"Speedups: {SPEEDUPS}")
    notes += [f"[{i}] {n}" for i, e in enumerate(report.engines) for n in e.notes]
    notes += [f"[{s.engine}] batch {s.batch} skipped: {s.reason}" for s in report.skipped]
    notes += [
        ("" if r.engine is None else f"[{r.engine}] ") + f"batch {r.batch} {r.label}: median "
        + ", ".join(f"{k} {_ms(v.median)} ms" for k, v in r.phases_ms.items())
        for r in report.rows if r.phases_ms and r.mode == LATENCY
    ]
    return notes


def _layer_lines(report: ProfileReport, times: Any) -> list[str]:
    name = report.engines[times.engine].name
    if not times.layers:
        return [f"[{times.engine}] {name}, batch {times.batch}: {times.note}"]
    head = (f"[{times.engine}] {name}, batch {times.batch}: the {len(times.layers)} slowest layers "
            f"({times.source}; all layers {_ms(times.total_ms)} ms per call)")
    body = [[x.name, x.type, _ms(x.ms), f"{x.ms / times.total_ms:.1%}" if times.total_ms else ""]
            for x in times.layers]
    return [head, "", *_table(["layer", "type", "ms", "share"], body)] + ([times.note] if times.note else [])


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def plot(report: ProfileReport, path: str | os.PathLike, force: bool = False) -> None:
    """A PNG: latency (p50 solid, p90 dashed, p99 dotted) and throughput against batch size,
    one line per engine and per eager baseline (``figure``)."""
    save_png(figure(report), path, force)


def figure(report: ProfileReport) -> Any:
    """The plot as a matplotlib Figure: the two axes, a legend under them that names each
    runner's requests in flight, and the note on latency against throughput speedups."""
    chart, latency, throughput = two_axes(height=6.5)
    _plot_lines(report, latency, throughput)
    _style_axes(report, latency, throughput)
    devices = sorted({e.device_name for e in report.engines})
    title = (f"densenet-trt profile, {report.date_utc}, {', '.join(devices)}, "
             f"{report.settings.threads} CPU threads")
    if {r.mode for r in report.rows} == {LATENCY, THROUGHPUT}:
        title += "\n" + textwrap.fill(SPEEDUPS[0].upper() + SPEEDUPS[1:] + ".", 170)
    chart.suptitle(title, fontsize="medium")
    return chart


def two_axes(height: float = 5.5) -> tuple[Any, Any, Any]:
    """A figure with two axes side by side (latency, throughput), for the reports' plots."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DenseNetTRTError("plot needs matplotlib: pip install matplotlib") from None
    chart = Figure(figsize=(13, height), layout="constrained")
    FigureCanvasAgg(chart)
    latency, throughput = chart.subplots(1, 2)
    return chart, latency, throughput


def save_png(chart: Any, path: str | os.PathLike, force: bool) -> None:
    with atomic_path(path, force=force) as tmp:
        chart.savefig(tmp, format="png", dpi=100)


def _series_name(report: ProfileReport, r: Row) -> str:
    if r.engine is None:
        return f"eager {r.precision} ({r.baseline})"
    return f"[{r.engine}] {report.engines[r.engine].name}"


def _in_flight(rows: list[Row]) -> str:
    """The requests in flight of a runner's plotted throughput points."""
    counts = sorted({r.requests for r in rows})
    return f"{'/'.join(map(str, counts))} in flight"


def _plot_lines(report: ProfileReport, latency: Any, throughput: Any) -> None:
    """On the two axes, one colour per engine and per eager baseline: its latency percentiles
    (latency mode; p99 only from MIN_SAMPLES samples or more) and its measured throughput (the
    most requests in flight), against batch size; the throughput line's label says its requests
    in flight."""
    series: dict[str, dict[str, list[Row]]] = {}
    for r in report.rows:
        series.setdefault(_series_name(report, r), {}).setdefault(r.mode, []).append(r)
    for n, (name, modes) in enumerate(series.items()):
        color = f"C{n % 10}"
        rows = sorted(modes.get(LATENCY, []), key=lambda r: r.batch)
        for stat, style in (("median", "-"), ("p90", "--"), ("p99", ":")):
            points = [r for r in rows if stat != "p99" or r.latency_ms.enough]
            latency.plot([r.batch for r in points], [getattr(r.latency_ms, stat) for r in points], style,
                         color=color, marker="o" if stat == "median" else None)
        best: dict[int, Row] = {}
        for r in modes.get(THROUGHPUT, rows):
            if r.batch not in best or r.images_per_s > best[r.batch].images_per_s:
                best[r.batch] = r
        points = sorted(best.items())
        throughput.plot([b for b, _ in points], [r.images_per_s for _, r in points], "-o", color=color,
                        label=f"{name}, {_in_flight([r for _, r in points])}")


def _style_axes(report: ProfileReport, latency: Any, throughput: Any) -> None:
    measured = any(r.mode == THROUGHPUT for r in report.rows)
    style_pair(latency, throughput, "batch size", sorted({r.batch for r in report.rows}),
               "images/s " + ("(measured)" if measured else "(batch / median latency)"),
               "throughput (the best of each runner's requests in flight)")


def style_pair(latency: Any, throughput: Any, xlabel: str, ticks: list[int], throughput_label: str,
               throughput_title: str = "throughput") -> None:
    """The two axes of ``two_axes``: titles, labels, log scales with labelled ticks (1, 2, 5 per
    decade on the latency axis), ``ticks`` on the x axis, grids, and the legend under both axes
    (where it covers no line)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    latency.set(ylabel="latency (ms)", yscale="log", title="latency: p50 solid, p90 dashed, p99 dotted")
    latency.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    latency.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency.yaxis.set_minor_locator(NullLocator())
    throughput.set(ylabel=throughput_label, title=throughput_title)
    for axes in (latency, throughput):
        axes.set(xlabel=xlabel, xscale="log")
        axes.set_xticks(ticks, [str(t) for t in ticks])
        axes.xaxis.set_minor_locator(NullLocator())
        axes.grid(alpha=0.3)
    handles, labels = throughput.get_legend_handles_labels()
    if labels:
        throughput.figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 2),
                                 fontsize="small")
