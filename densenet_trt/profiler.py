"""Latency and throughput of built engines, measured against eager PyTorch in the same run.

``profile`` loads each engine, draws one standard-normal input per batch size, warms up, then
times the engine and its eager PyTorch baseline interleaved (eager, engine, eager, engine, ...)
so that drift of a shared machine hits both alike; the speedup is the median of the paired
ratios eager/engine. CPU calls are timed with ``time.perf_counter_ns``, each after a short pause
(``gap``: PyTorch's OpenMP threads spin-wait after an eager run and would otherwise steal the
cores from the next call); GPU calls with CUDA events, the input already on the GPU unless
``include_transfers`` (then host-to-device, compute and device-to-host are timed apart too, as
trtexec does), optionally replayed from a CUDA graph (the engine only: eager stays eager).

The timers and the interleaved loop are in ``timing.py``, the statistics in ``stats.py``, the
report (``ProfileReport``: JSON, CSV, Markdown, PNG) and its JSON schema in ``report.py``.
"""

from __future__ import annotations

import copy
import datetime
import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from .version import __version__
from .artifact import cpu_name, device_info
from .backends._torch import eager_limitation, torch_precisions
from .build import Progress, quiet, torch_threads
from .capture import example_input
from .engine import Engine, engine_reference, load
from .errors import DenseNetTRTError
from .spec import Precision
from .report import (
    DEFAULT_GAP,
    DEFAULT_ITERATIONS,
    DEFAULT_WARMUP,
    MAX_GAP,
    MAX_ROUNDS,
    MAX_SECONDS,
    EngineInfo,
    ProfileReport,
    Row,
    Settings,
    Skipped,
    _ms,
    check_output,
)
from .stats import paired_speedup, summarize
from .timing import Timer, _peak_gpu_mb, _peak_rss_mb, _tf32_off, cpu_timer, cuda_timer, interleave

OUTPUT_SUFFIXES = (".json", ".csv", ".md", ".png")



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
        loaded, references = _load_all(engines, settings, progress)
        plan, skipped = _plan(loaded, settings.batches)
        if not plan:
            reasons = "; ".join(s.reason for s in skipped)
            raise DenseNetTRTError(f"no batch size can run: {reasons}; choose batches within the engines' ranges")
        for s in skipped:
            progress(f"skip [{s.engine}] batch {s.batch}: {s.reason}")
        infos = [_engine_info(engine, seconds) for engine, seconds in loaded]
        rows = _measure_all(loaded, references, infos, plan, settings, progress)

    report = ProfileReport(
        date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        settings=settings, host=_host(settings), engines=infos, rows=rows, skipped=skipped,
    )
    _write(report, paths, progress)
    return report


def _settings(
    batches: Iterable[int], warmup: int | None, warmup_time: float | None, iterations: int | None,
    duration: float | None, vs: str, threads: int | None, cuda_graphs: bool, include_transfers: bool,
    gap: float,
) -> Settings:
    """The checked options with their defaults resolved, and a new random seed."""
    batches = tuple(batches)
    _check_batches(batches)
    _check_amounts(warmup, warmup_time, iterations, duration)
    _check_run_options(vs, threads, gap)
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


def _check_batches(batches: tuple[Any, ...]) -> None:
    if not batches or any(not (_is_int(b) and b > 0) for b in batches):
        raise DenseNetTRTError(f"batches must be positive integers, got {list(batches)!r}")


def _check_amounts(
    warmup: int | None, warmup_time: float | None, iterations: int | None, duration: float | None
) -> None:
    """How long to warm up and to measure: one of each pair, each of them positive (warmup may
    be 0), finite and within MAX_ROUNDS or MAX_SECONDS."""
    if warmup is not None and warmup_time is not None:
        raise DenseNetTRTError("give warmup (rounds) or warmup_time (seconds), not both")
    if warmup is not None and not (_is_int(warmup) and 0 <= warmup <= MAX_ROUNDS):
        raise DenseNetTRTError(f"warmup must be a count from 0 to {MAX_ROUNDS:,}, got {warmup!r}")
    if warmup_time is not None and not (_is_number(warmup_time) and 0 < warmup_time <= MAX_SECONDS):
        raise DenseNetTRTError(
            f"warmup_time must be a positive number of seconds up to {MAX_SECONDS:g}, got {warmup_time!r}")
    if iterations is not None and duration is not None:
        raise DenseNetTRTError("give iterations or duration (seconds), not both")
    if iterations is not None and not (_is_int(iterations) and 0 < iterations <= MAX_ROUNDS):
        raise DenseNetTRTError(f"iterations must be a positive integer up to {MAX_ROUNDS:,}, got {iterations!r}")
    if duration is not None and not (_is_number(duration) and 0 < duration <= MAX_SECONDS):
        raise DenseNetTRTError(
            f"duration must be a positive number of seconds up to {MAX_SECONDS:g}, got {duration!r}")


def _check_run_options(vs: str, threads: int | None, gap: float) -> None:
    if vs not in ("eager", "none"):
        raise DenseNetTRTError(f"vs must be 'eager' or 'none', got {vs!r}")
    if threads is not None and not (_is_int(threads) and threads > 0):
        raise DenseNetTRTError(f"threads must be a positive integer, got {threads!r}")
    if not (_is_number(gap) and 0 <= gap <= MAX_GAP):
        raise DenseNetTRTError(f"gap must be 0 to {MAX_GAP:g} seconds, got {gap!r}")


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
    if engine.device == "cuda":
        return
    for flag in ("cuda_graphs", "include_transfers"):
        if getattr(settings, flag):
            raise DenseNetTRTError(
                f"{flag} applies to GPU engines; {engine.path} runs on the CPU: profile it without "
                f"{flag}=True"
            )


def _plan(loaded: list[tuple[Engine, float]], batches: tuple[int, ...]) -> tuple[dict[int, list[int]], list[Skipped]]:
    """The batch sizes each engine can run, and the cells skipped with the reason."""
    plan: dict[int, list[int]] = {}
    skipped = []
    for index, (engine, _) in enumerate(loaded):
        for n in batches:
            try:
                engine.batch.check(n)
            except DenseNetTRTError as e:
                skipped.append(Skipped(index, n, f"{engine.path.name}: {e}"))
            else:
                plan.setdefault(index, []).append(n)
    return plan, skipped


def _engine_info(engine: Engine, load_seconds: float) -> EngineInfo:
    m = engine.manifest
    device = engine.device
    eager, notes = [Precision.FP32.value], []
    if m.precision is not Precision.FP32:
        if m.precision in torch_precisions(device):
            eager.append(m.precision.value)
        else:
            reason = eager_limitation(device, m.precision)
            notes.append(f"eager {m.precision} is not run on {device}: {reason}; compared with eager fp32 only")
    return EngineInfo(
        path=str(engine.path), name=engine.path.name, model=m.model.name, backend=m.backend,
        format=m.format, precision=m.precision.value, batch_range=str(m.batch),
        image_size=m.image_size, device=device_info(device), versions=dict(m.versions),
        build_seconds=m.build.seconds, load_seconds=round(load_seconds, 4),
        eager=eager, notes=notes,
    )


def _eager_runners(
    engine: Engine, net: torch.nn.Module, precisions: list[str]
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Eager PyTorch runners of ``net`` (the engine's model and weights), one per precision, on
    the engine's device."""
    device = engine.device
    runners = {}
    for precision in precisions:
        dtype = Precision.parse(precision).dtype
        model = copy.deepcopy(net).to(device, dtype)

        def run(x: torch.Tensor, model: torch.nn.Module = model, dtype: torch.dtype = dtype) -> torch.Tensor:
            with torch.no_grad():
                return model(x.to(dtype))

        runners[precision] = run
    return runners


def _load_all(
    engines: Sequence[str | os.PathLike], settings: Settings, progress: Progress
) -> tuple[list[tuple[Engine, float]], list[torch.nn.Module]]:
    """Each engine with its seconds to load, checked against the GPU-only options; with ``vs``
    eager also its eager model (made once per engine)."""
    loaded: list[tuple[Engine, float]] = []
    references: list[torch.nn.Module] = []
    for path in engines:
        progress(f"loading {path}")
        start = time.perf_counter()
        engine = load(path, threads=settings.threads)
        loaded.append((engine, time.perf_counter() - start))
        _check_device_options(engine, settings)
        if settings.vs == "eager":
            try:
                references.append(engine_reference(engine))
            except DenseNetTRTError as e:
                raise DenseNetTRTError(f"{e}; or profile without the eager baseline (vs=none)") from None
    return loaded, references


def _measure_all(
    loaded: list[tuple[Engine, float]],
    references: list[torch.nn.Module],
    infos: list[EngineInfo],
    plan: dict[int, list[int]],
    settings: Settings,
    progress: Progress,
) -> list[Row]:
    """The rows of every planned cell, engine by engine; one random input per batch size and
    input shape, shared by the engines."""
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
                progress(_row_line(row))
            rows.extend(cell)
    return rows


def _row_line(row: Row) -> str:
    """The progress line of a measured row."""
    speed = "" if row.speedup is None else f", engine {row.speedup:.2f}x faster"
    flag = " (unstable, rerun)" if row.latency_ms.unstable else ""
    return f"  {row.label}: median {_ms(row.latency_ms.median)} ms, cv {row.latency_ms.cv:.1%}{flag}{speed}"


def _measure(
    index: int,
    engine: Engine,
    eager: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    batch: int,
    settings: Settings,
) -> list[Row]:
    """Rows of one cell: each eager baseline and the engine, interleaved."""
    on_gpu = engine.device == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        timers = _cuda_timers(engine, eager, x, settings)
    else:
        timers = [*(cpu_timer(lambda run=run: run(x)) for run in eager.values()),
                  cpu_timer(lambda: engine.run(x))]
    samples = interleave(
        timers, warmup=settings.warmup or 0, warmup_time=settings.warmup_time,
        iterations=settings.iterations, duration=settings.duration, gap=0.0 if on_gpu else settings.gap,
    )
    peaks = (_peak_rss_mb(), _peak_gpu_mb() if on_gpu else None)
    runners = [*(("eager", p) for p in eager), ("engine", engine.precision)]
    return _rows(index, batch, runners, samples, peaks)


def _cuda_timers(
    engine: Engine, eager: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
    settings: Settings,
) -> list[Timer]:
    """CUDA-event timers of each eager runner, then of the engine (from a CUDA graph if asked)."""
    timers = [cuda_timer(run, x, include_transfers=settings.include_transfers) for run in eager.values()]
    try:
        timers.append(cuda_timer(engine.run, x, include_transfers=settings.include_transfers,
                                 cuda_graphs=settings.cuda_graphs))
    except RuntimeError as e:
        if not settings.cuda_graphs:
            raise
        raise DenseNetTRTError(
            f"{engine.path} ({engine.backend}) cannot be captured in a CUDA graph ({e}); "
            "profile it without cuda_graphs=True"
        ) from None
    return timers


def _rows(
    index: int, batch: int, runners: list[tuple[str, str]], samples: list[list[dict[str, float]]],
    peaks: tuple[float, float | None],
) -> list[Row]:
    """A row per ``(runner, precision)`` from its samples, the engine's last; each eager row with
    the engine's paired speedup over it. ``peaks``: host RSS and GPU memory, MiB."""
    engine_ms = [s["latency"] for s in samples[-1]]
    rows = []
    for (runner, precision), measured in zip(runners, samples):
        latency = [s["latency"] for s in measured]
        phases = {k: summarize([s[k] for s in measured]) for k in measured[0] if k != "latency"}
        speedup = None if runner == "engine" else paired_speedup(latency, engine_ms)
        rows.append(Row(index, batch, runner, precision, summarize(latency), phases, speedup, *peaks))
    return rows


def _host(settings: Settings) -> dict[str, Any]:
    """This machine and the versions that ran the measurements."""
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": settings.threads,
            "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "numpy": np.__version__, "densenet-trt": __version__}


def _write(report: ProfileReport, paths: list[Path], progress: Progress) -> None:
    """Each report file, in the format its suffix names."""
    writers = {".json": report.write_json, ".csv": report.write_csv, ".md": report.write_markdown,
               ".png": report.plot}
    for path in paths:
        writers[path.suffix.lower()](path)
        progress(f"wrote {path}")
