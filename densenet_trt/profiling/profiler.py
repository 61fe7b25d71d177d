"""Latency and measured throughput of built engines, against one eager PyTorch baseline per
model, input size and device for the whole run.

``profile`` loads each engine, draws one standard-normal input per batch size, then for each batch
size and each eager baseline (the engines of one model, input size and device) measures:

- latency: one request at a time, the runners interleaved in rounds (eager, engine A, engine B,
  eager, ...) so that drift of a shared machine hits all alike; each engine's speedup is the
  median of its paired ratios eager/engine, against the same eager samples. CPU calls are timed
  with ``time.perf_counter_ns``, each after a short pause (``gap``: PyTorch's OpenMP threads
  spin-wait after an eager run and would otherwise steal the cores from the next call); GPU calls
  with CUDA events, the input already on the GPU unless ``include_transfers`` (then host-to-device,
  compute and device-to-host are timed apart too, as trtexec does), optionally replayed from a
  CUDA graph (the engine only: eager stays eager).
- throughput: images completed / wall time, each runner back to back, and each engine with
  several requests in flight where its runtime offers it (``throughput.py``).

Eager runs as users tune it: ``torch.no_grad()``, and on a GPU ``cudnn.benchmark=True`` (with TF32
off, so that fp32 is true fp32). The timers are in ``timing.py``, one cell's measurement in
``measure.py``, per-layer timing in ``layers.py``, the statistics in ``stats.py``, the report
(``ProfileReport``: JSON, CSV, Markdown, PNG) and its JSON schema in ``report.py``.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import platform
import secrets
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..version import __version__
from ..engine.artifact import check_outputs
from ..machine import cpu_name, device_info
from ..backends._torch import eager_limitation, torch_precisions
from ..machine import check_threads, torch_threads
from ..progress import Progress, quiet
from ..engine.capture import example_input
from ..engine.load import Engine, engine_reference, load
from ..defaults import (PROFILE_BATCH_SIZE, PROFILE_DURATION, PROFILE_GAP, PROFILE_LAYERS, PROFILE_MODE, PROFILE_VS,
                       PROFILE_WARMUP)
from ..errors import DenseNetTRTError
from ..engine.manifest import SYNTHETIC_CALIBRATION
from .measure import Group, measure_cell
from ..engine.spec import Precision
from .report import (
    MAX_GAP,
    MAX_REQUESTS,
    MAX_ROUNDS,
    MAX_SECONDS,
    MODES,
    EngineInfo,
    LayerTimes,
    ProfileReport,
    Row,
    Settings,
    Skipped,
)
from .timing import eager_as_users_run_it, resident_mb

OUTPUT_SUFFIXES = (".json", ".csv", ".md", ".png")


def profile(
    engines: Sequence[str | os.PathLike],
    *,
    batch_size: int | Iterable[int] = PROFILE_BATCH_SIZE, iterations: int | None = None,
    duration: float | None = None, warmup_iterations: int | None = None, warmup_duration: float | None = None,
    vs: str = PROFILE_VS, threads: int | None = None,
    cuda_graphs: bool = False, include_transfers: bool = False, gap: float = PROFILE_GAP,
    mode: str = PROFILE_MODE, requests: int | None = None, layers: int = PROFILE_LAYERS,
    outputs: Sequence[str | os.PathLike] = (), force: bool = False,
    progress: Progress = quiet,
    **old_names: Any,
) -> ProfileReport:
    """Latency and measured throughput of each engine folder in ``engines`` at each batch size.

    The parameters are the command line's options (``--batch-size`` is ``batch_size``); the old
    names ``batches``, ``warmup`` and ``warmup_time`` still work, with a DeprecationWarning.

    Args:
        batch_size: images per request: one size, or several measured one after another; a
            size outside an engine's range is skipped (the report says why) unless none can run.
        iterations, duration: each measurement's rounds (latency) or requests (throughput), or
            its seconds; default 5 seconds. p99 needs 100 samples or more to be a tail.
        warmup_iterations, warmup_duration: warm-up rounds, or seconds, first; default 3 rounds.
        vs: ``"eager"``: also time eager PyTorch (the same model and weights) in float32 and,
            where it can, each engine's precision: one baseline per model, input size and
            device, in the same rounds as its engines; ``"none"``: the engines alone.
        threads: torch's CPU threads (and the engines') for the run; default: torch's current.
        cuda_graphs, include_transfers: GPU engines, latency mode: replay the engine from a CUDA
            graph; time the copies of input and output too.
        gap: seconds of pause before each timed CPU call in latency mode.
        mode: ``"latency"`` (one request at a time, with pauses), ``"throughput"`` (measured,
            back to back and with requests in flight where the runtime offers it) or ``"both"``.
        requests: requests in flight in throughput mode; default: the runtime's choice.
        layers: list each engine's N slowest layers where its runtime times layers (0: none).
        outputs: report files to write, by suffix (.json, .csv, .md, .png); checked first by
            the output rule (``artifact.check_outputs``); one that exists only with ``force``.
        progress: called with a line as each engine and batch size is measured.
    """
    given = _old_names(old_names, batch_size=batch_size, warmup_iterations=warmup_iterations,
                       warmup_duration=warmup_duration)
    settings = _settings(*given.values(), iterations, duration, vs, threads, cuda_graphs, include_transfers, gap, mode,
                         requests, layers)
    paths = _report_paths(outputs, force, engines)
    if not engines:
        raise DenseNetTRTError("no engines to profile; give one or more engine folders")

    with torch_threads(settings.threads), eager_as_users_run_it():
        loaded = _load_all(engines, settings, progress)
        plan, skipped = _plan(loaded, settings.batches, progress)
        infos = [_engine_info(engine, seconds) for engine, seconds, _ in loaded]
        groups = _groups(loaded, infos, settings, progress)
        rows, layer_rows = _measure_all([e for e, _, _ in loaded], infos, groups, plan, settings, progress)

    report = ProfileReport(
        date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        settings=settings, host=_host(settings, infos), engines=infos, rows=rows, skipped=skipped,
        layers=layer_rows,
    )
    _write(report, paths, force, progress)
    return report


# The library's names before it took the command line's, each with its new name.
OLD_NAMES = {"batches": "batch_size", "warmup": "warmup_iterations", "warmup_time": "warmup_duration"}


def _old_names(old: dict[str, Any], **new: Any) -> dict[str, Any]:
    """``new`` with the value of each old name given in ``old`` (a DeprecationWarning each);
    an unknown name is a TypeError, as Python says it."""
    for name, value in old.items():
        if name not in OLD_NAMES:
            raise TypeError(f"profile() got an unexpected keyword argument {name!r}")
        warnings.warn(f"profile({name}=...) is deprecated; use {OLD_NAMES[name]}=...", DeprecationWarning,
                      stacklevel=3)
        new[OLD_NAMES[name]] = value
    return new


def _settings(
    batches: int | Iterable[int], warmup: int | None, warmup_time: float | None, iterations: int | None,
    duration: float | None, vs: str, threads: int | None, cuda_graphs: bool, include_transfers: bool,
    gap: float, mode: str, requests: int | None, layers: int,
) -> Settings:
    """The checked options with their defaults resolved, and a new random seed."""
    batches = (batches,) if _is_int(batches) else tuple(batches)
    _check_batches(batches)
    _check_amounts(warmup, warmup_time, iterations, duration)
    _check_run_options(vs, threads, gap)
    _check_modes(mode, requests, layers)
    return Settings(
        batches=tuple(sorted(set(batches))),
        warmup=PROFILE_WARMUP if warmup is None and warmup_time is None else warmup,
        warmup_time=warmup_time,
        iterations=iterations,
        duration=PROFILE_DURATION if iterations is None and duration is None else duration,
        vs=vs,
        threads=threads or torch.get_num_threads(),
        cuda_graphs=cuda_graphs,
        include_transfers=include_transfers,
        gap=float(gap),
        seed=secrets.randbelow(2**31),
        mode=mode,
        requests=requests,
        layers=layers,
    )


def _check_batches(batches: tuple[Any, ...]) -> None:
    if not batches or any(not (_is_int(b) and b > 0) for b in batches):
        raise DenseNetTRTError(f"batch_size must be positive integers, got {list(batches)!r}")


def _check_amounts(
    warmup: int | None, warmup_time: float | None, iterations: int | None, duration: float | None
) -> None:
    """How long to warm up and to measure: one of each pair, each of them positive (warmup may
    be 0), finite and within MAX_ROUNDS or MAX_SECONDS."""
    if warmup is not None and warmup_time is not None:
        raise DenseNetTRTError("give warmup_iterations (rounds) or warmup_duration (seconds), not both")
    if warmup is not None and not (_is_int(warmup) and 0 <= warmup <= MAX_ROUNDS):
        raise DenseNetTRTError(f"warmup_iterations must be a count from 0 to {MAX_ROUNDS:,}, got {warmup!r}")
    if warmup_time is not None and not (_is_number(warmup_time) and 0 < warmup_time <= MAX_SECONDS):
        raise DenseNetTRTError(
            f"warmup_duration must be a positive number of seconds up to {MAX_SECONDS:g}, got {warmup_time!r}")
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
    if threads is not None:
        check_threads(threads)
    if not (_is_number(gap) and 0 <= gap <= MAX_GAP):
        raise DenseNetTRTError(f"gap must be 0 to {MAX_GAP:g} seconds, got {gap!r}")


def _check_modes(mode: str, requests: int | None, layers: int) -> None:
    if mode not in MODES:
        raise DenseNetTRTError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if requests is not None and not (_is_int(requests) and 1 <= requests <= MAX_REQUESTS):
        raise DenseNetTRTError(f"requests must be an integer from 1 to {MAX_REQUESTS}, got {requests!r}")
    if not (_is_int(layers) and 0 <= layers <= MAX_ROUNDS):
        raise DenseNetTRTError(f"layers must be a count from 0 to {MAX_ROUNDS:,}, got {layers!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _report_paths(outputs: Sequence[str | os.PathLike], force: bool, engines: Sequence[str | os.PathLike]) -> list[Path]:
    """The report files, checked by the output rule (the engines are the inputs) and by suffix."""
    checked = check_outputs({f"outputs[{i}]": p for i, p in enumerate(outputs)}, force=force,
                            inputs=[("engines", e) for e in engines])
    return [_check_output_suffix(p) for p in checked.values()]


def _check_output_suffix(path: Path | None) -> Path:
    if path is None or path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DenseNetTRTError(f"{'-' if path is None else path}: cannot tell the report format; end the name "
                               f"with {', '.join(OUTPUT_SUFFIXES)}")
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


def _plan(
    loaded: list[tuple[Engine, float, float]], batches: tuple[int, ...], progress: Progress
) -> tuple[dict[int, list[int]], list[Skipped]]:
    """The batch sizes each engine can run, and the cells skipped with the reason (an error if
    nothing can run)."""
    plan: dict[int, list[int]] = {}
    skipped = []
    for index, (engine, _, _) in enumerate(loaded):
        for n in batches:
            try:
                engine.batch.check(n)
            except DenseNetTRTError as e:
                skipped.append(Skipped(index, n, f"{engine.path.name}: {e}"))
            else:
                plan.setdefault(index, []).append(n)
    if not plan:
        reasons = "; ".join(s.reason for s in skipped)
        raise DenseNetTRTError(f"no batch size can run: {reasons}; choose batches within the engines' ranges")
    for s in skipped:
        progress(f"skip [{s.engine}] batch {s.batch}: {s.reason}")
    return plan, skipped


def _baseline(engine: Engine) -> str:
    """The eager baseline an engine is measured against: its model (with any overrides), input
    size and device."""
    m = engine.manifest
    overrides = f" {json.dumps(m.model.overrides, sort_keys=True)}" if m.model.overrides else ""
    classes = "" if m.model.num_classes == m.model.config.get("num_classes") else f" {m.model.num_classes} classes"
    return (f"{m.model.name}{overrides}{classes} {m.in_channels}x{m.image_size}x{m.image_size} "
            f"{engine.device}")


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
    if m.calibration is not None and m.calibration.synthetic:
        notes.append(f"int8 from a {SYNTHETIC_CALIBRATION}")
    return EngineInfo(
        path=str(engine.path), name=engine.path.name, model=m.model.name, backend=m.backend,
        format=m.format, precision=m.precision.value, batch_range=str(m.batch),
        image_size=m.image_size, device=device_info(device), versions=dict(m.versions),
        build_seconds=m.build.seconds, load_seconds=round(load_seconds, 4),
        eager=eager, notes=notes, baseline=_baseline(engine),
    )


def _groups(
    loaded: list[tuple[Engine, float, float]], infos: list[EngineInfo], settings: Settings, progress: Progress
) -> list[Group]:
    """The engines grouped by eager baseline, each group with its eager runners (made once for
    the run; with vs=none, none) in the precisions its engines are compared with."""
    groups: dict[str, Group] = {}
    for index, (engine, _, resident) in enumerate(loaded):
        info = infos[index]
        group = groups.setdefault(info.baseline, Group(info.baseline, engine.device, [], {}, {}))
        group.engines.append(index)
        group.resident_mb[f"[{index}]"] = resident
    if settings.vs == "eager":
        for group in groups.values():
            first = loaded[group.engines[0]][0]
            wanted = {p for i in group.engines for p in infos[i].eager}
            progress(f"eager baseline: {group.baseline}, {', '.join(p.value for p in Precision if p.value in wanted)}")
            _eager_runners(group, _reference(first), [p for p in Precision if p.value in wanted])
    return list(groups.values())


def _reference(engine: Engine) -> torch.nn.Module:
    try:
        return engine_reference(engine)
    except DenseNetTRTError as e:
        raise DenseNetTRTError(f"{e}; or profile without the eager baseline (vs=none)") from None


def _eager_runners(group: Group, net: torch.nn.Module, precisions: list[Precision]) -> None:
    """Eager PyTorch runners of ``net`` (the engines' model and weights) in ``group``, one per
    precision, on the group's device, each under ``torch.no_grad()``; on a GPU with the device
    memory its weights keep."""
    for precision in precisions:
        dtype = precision.dtype

        def place(dtype: torch.dtype = dtype) -> torch.nn.Module:
            return copy.deepcopy(net).to(group.device, dtype)

        model, resident = resident_mb(place) if group.device == "cuda" else (place(), 0.0)

        def run(x: torch.Tensor, model: torch.nn.Module = model, dtype: torch.dtype = dtype) -> torch.Tensor:
            with torch.no_grad():
                return model(x.to(dtype))

        group.eager[precision.value] = run
        group.resident_mb[f"eager {precision.value}"] = resident


def _load_all(
    engines: Sequence[str | os.PathLike], settings: Settings, progress: Progress
) -> list[tuple[Engine, float, float]]:
    """Each engine with its seconds to load and the device MiB its load left in use (GPU;
    0 on the CPU), checked against the GPU-only options."""
    loaded: list[tuple[Engine, float, float]] = []
    for path in engines:
        progress(f"loading {path}")
        timed: list[float] = []

        def timed_load(path: str | os.PathLike = path) -> Engine:
            start = time.perf_counter()
            engine = load(path, threads=settings.threads)
            timed.append(time.perf_counter() - start)
            return engine

        engine, resident = resident_mb(timed_load) if torch.cuda.is_available() else (timed_load(), 0.0)
        _check_device_options(engine, settings)
        loaded.append((engine, timed[0], resident if engine.device == "cuda" else 0.0))
    return loaded


def _measure_all(
    engines: list[Engine], infos: list[EngineInfo], groups: list[Group], plan: dict[int, list[int]],
    settings: Settings, progress: Progress,
) -> tuple[list[Row], list[LayerTimes]]:
    """The rows of every batch size and eager baseline; one random input per batch size and
    input shape, shared by the runners."""
    rows: list[Row] = []
    layer_rows: list[LayerTimes] = []
    for n in settings.batches:
        for group in groups:
            cell = Group(group.baseline, group.device, [i for i in group.engines if n in plan.get(i, [])],
                         group.eager, group.resident_mb)
            if not cell.engines:
                continue
            first = engines[cell.engines[0]]
            x = example_input(n, first.image_size, first.in_channels, seed=settings.seed + n)
            names = ", ".join(f"[{i}] {engines[i].path.name}" for i in cell.engines)
            progress(f"batch {n}: {names}" + (f"; eager PyTorch: {cell.baseline}" if cell.eager else ""))
            cell_rows, cell_layers = measure_cell(cell, engines, infos, x, n, settings, progress)
            rows += cell_rows
            layer_rows += cell_layers
    return rows, layer_rows


def _host(settings: Settings, infos: list[EngineInfo]) -> dict[str, Any]:
    """This machine, the versions that ran the measurements, and how eager was tuned."""
    eager = ["torch.no_grad()"]
    if any(e.device["type"] == "cuda" for e in infos):
        eager.append("on CUDA cudnn.benchmark=True (cuDNN's fastest algorithms) with TF32 off (true fp32)")
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": settings.threads,
            "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "numpy": np.__version__, "densenet-trt": __version__, "eager": eager}


def _write(report: ProfileReport, paths: list[Path], force: bool, progress: Progress) -> None:
    """Each report file, in the format its suffix names."""
    writers = {".json": report.write_json, ".csv": report.write_csv, ".md": report.write_markdown,
               ".png": report.plot}
    for path in paths:
        writers[path.suffix.lower()](path, force)
        progress(f"wrote {path}")
