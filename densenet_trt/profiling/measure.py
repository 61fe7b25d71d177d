"""One cell of a profile run measured: one batch size of the engines that share an eager baseline
(same model, input size and device), in latency mode (the runners interleaved in rounds, one
request at a time) and in throughput mode (each runner back to back, then with several requests
in flight where its runtime offers it); device memory per runner on a GPU; the slowest layers."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from ..progress import Progress
from ..errors import DenseNetTRTError
from .layers import layer_times
from .report import EngineInfo, LayerTimes, Row, Settings
from .report_text import _ms
from .stats import TOO_FEW, paired_speedup, summarize
from .throughput import BackToBack, Requests, in_flight, stop_after
from .timing import Timer, _peak_rss_mb, call_peak_mb, cpu_timer, cuda_timer, interleave

Runner = Callable[[torch.Tensor], torch.Tensor]
LATENCY, THROUGHPUT = "latency", "throughput"


@dataclasses.dataclass
class Group:
    """Engines measured against one eager baseline: its label, eager runners (by precision, in
    the precision table's order) and the device MiB each runner keeps resident."""

    baseline: str
    device: str
    engines: list[int]
    eager: dict[str, Runner]
    resident_mb: dict[str, float]  # "eager fp32", "[0]": MiB left in use by its load


def measure_cell(
    group: Group, engines: list[Any], infos: list[EngineInfo], x: torch.Tensor, batch: int,
    settings: Settings, progress: Progress,
) -> tuple[list[Row], list[LayerTimes]]:
    """The rows of ``group``'s engines (report indices, all able to run ``batch``) and eager
    runners on ``x``; with ``settings.layers``, each engine's slowest layers."""
    memory = _device_mb(group, engines, x) if group.device == "cuda" else {}
    rows: list[Row] = []
    if settings.mode in ("both", LATENCY):
        rows += _latency(group, engines, infos, x, batch, settings, memory)
    if settings.mode in ("both", THROUGHPUT):
        rows += _throughput(group, engines, infos, x, batch, settings, memory)
    for row in rows:
        progress(_row_line(row))
    layers = [layer_times(i, engines[i], x, batch, settings.layers, settings.threads)
              for i in group.engines] if settings.layers else []
    return rows, layers


def _row_line(row: Row) -> str:
    """The progress line of a measured row."""
    who = row.label if row.engine is None else f"[{row.engine}] {row.precision}"  # "eager fp32", "[0] int8"
    if row.mode == THROUGHPUT:
        return (f"  {who} throughput, {row.requests} in flight: {row.images_per_s:.1f} images/s "
                f"({row.latency_ms.count} requests in {row.wall_s:.2f} s)")
    s = row.latency_ms
    cv = f"cv {TOO_FEW}" if not s.enough else f"cv {s.cv:.1%}" + (" (unstable, rerun)" if s.unstable else "")
    speed = "".join(f", {v:.2f}x eager {k}" for k, v in row.speedup.items())
    return f"  {who} latency: median {_ms(s.median)} ms, n {s.count}, {cv}{speed}"


def _calls(group: Group, engines: list[Any], x: torch.Tensor) -> list[tuple[str, str, int | None, Callable[[], object]]]:
    """(runner, precision, engine index, call) of each eager runner, then each engine, on ``x``
    (moved once to the group's device)."""
    device_x = x.to(group.device)
    calls: list[tuple[str, str, int | None, Callable[[], object]]] = [
        ("eager", p, None, lambda run=run: run(device_x)) for p, run in group.eager.items()]
    calls += [("engine", engines[i].precision.value, i, lambda e=engines[i]: e.run(device_x)) for i in group.engines]
    return calls


def _key(runner: str, precision: str, index: int | None) -> str:
    return f"eager {precision}" if index is None else f"[{index}]"


def _device_mb(group: Group, engines: list[Any], x: torch.Tensor) -> dict[str, float]:
    """Each runner's device MiB: what its load left resident and the peak of one call."""
    return {_key(r, p, i): group.resident_mb.get(_key(r, p, i), 0.0) + call_peak_mb(call)
            for r, p, i, call in _calls(group, engines, x)}


def _latency(
    group: Group, engines: list[Any], infos: list[EngineInfo], x: torch.Tensor, batch: int, settings: Settings,
    memory: dict[str, float],
) -> list[Row]:
    """Eager and the engines interleaved in rounds, one request at a time; each engine's speedup
    is the median of its paired ratios against the same eager samples."""
    on_gpu = group.device == "cuda"
    timers = _cuda_timers(group, engines, x, settings) if on_gpu else [
        cpu_timer(call) for *_, call in _calls(group, engines, x)]
    samples = interleave(
        timers, warmup=settings.warmup or 0, warmup_time=settings.warmup_time,
        iterations=settings.iterations, duration=settings.duration, gap=0.0 if on_gpu else settings.gap,
    )
    rss = _peak_rss_mb()
    eager_ms = {p: [s["latency"] for s in measured] for p, measured in zip(group.eager, samples)}
    rows = []
    for (runner, precision, index, _), measured in zip(_calls(group, engines, x), samples):
        latency = [s["latency"] for s in measured]
        phases = {k: summarize([s[k] for s in measured]) for k in measured[0] if k != "latency"}
        stats = summarize(latency)
        speedup = {} if index is None else {
            p: paired_speedup(eager_ms[p], latency) for p in infos[index].eager if p in eager_ms}
        rows.append(Row(index, group.baseline, batch, LATENCY, 1, runner, precision, "", stats, phases,
                        batch * 1000.0 / stats.median, None, speedup, rss,
                        memory.get(_key(runner, precision, index))))
    return rows


def _cuda_timers(group: Group, engines: list[Any], x: torch.Tensor, settings: Settings) -> list[Timer]:
    """CUDA-event timers of each eager runner, then of each engine (from a CUDA graph if asked)."""
    transfers = settings.include_transfers
    timers = [cuda_timer(run, x, include_transfers=transfers) for run in group.eager.values()]
    for i in group.engines:
        try:
            timers.append(cuda_timer(engines[i].run, x, include_transfers=transfers,
                                     cuda_graphs=settings.cuda_graphs))
        except RuntimeError as e:
            if not settings.cuda_graphs:
                raise
            raise DenseNetTRTError(
                f"{engines[i].path} ({engines[i].backend}) cannot be captured in a CUDA graph ({e}); "
                "profile it without cuda_graphs=True"
            ) from None
    return timers


def _throughput(
    group: Group, engines: list[Any], infos: list[EngineInfo], x: torch.Tensor, batch: int, settings: Settings,
    memory: dict[str, float],
) -> list[Row]:
    """Each runner back to back, then each engine with several requests in flight where its
    runtime offers it (else a note on the engine); images/s = images completed / wall time."""
    sync = torch.cuda.synchronize if group.device == "cuda" else (lambda: None)
    ways: list[tuple[str, str, int | None, Requests]] = [
        (r, p, i, BackToBack(call, sync)) for r, p, i, call in _calls(group, engines, x)]
    for i in group.engines:
        several = in_flight(engines[i], x, settings.requests, settings.threads)
        note = several if isinstance(several, str) else several.note
        if note and note not in infos[i].notes:
            infos[i].notes.append(note)
        if not isinstance(several, str):
            ways.append(("engine", engines[i].precision.value, i, several))
    rows = []
    for runner, precision, index, requests in ways:
        times, wall = requests.measure(stop_after(settings.warmup or 0, settings.warmup_time),
                                       stop_after(settings.iterations, settings.duration))
        rows.append(Row(index, group.baseline, batch, THROUGHPUT, requests.requests, runner, precision,
                        requests.how, summarize(times), {}, len(times) * batch / wall, wall, {},
                        _peak_rss_mb(), memory.get(_key(runner, precision, index))))
    return rows
