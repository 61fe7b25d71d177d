"""Build and verify engines: the tool's main job.

``build`` is four steps, each short: ``plan`` (every refusal, before any work: the model, the
backend, the checkpoint, the calibration, the target folder), ``compile`` (the backend writes
the artifact into a temporary folder), ``gate`` (the engine, loaded back, against eager
float32 PyTorch) and ``write`` (the manifest, then the folder moves into place).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import os
import secrets
import time
from pathlib import Path
from typing import Any

import torch

from .artifact import atomic_dir, entry_path, hash_files, writable_folder
from ..machine import check_images_memory, device_info, torch_threads
from ..backends import BACKENDS, Backend, check_dla_batch, choose_backend, get_backend
from ..backends.base import Int8Placement
from .capture import INPUT_NAME, OUTPUT_NAME, example_input
from ..model.data import Preprocessing
from ..defaults import BACKEND, BATCH, ENGINES, MODEL, PRECISION, RANDOM_SEED, VERIFY_SAMPLES
from .load import Engine, engine_reference, load
from ..int8.speed import check_int8_speed
from ..errors import DenseNetTRTError
from .manifest import (
    MANIFEST,
    SYNTHETIC_CALIBRATION,
    AccuracyRecord,
    BuildRecord,
    CalibrationRecord,
    DeviceRecord,
    EngineManifest,
    ModelRecord,
    TensorRecord,
    parse,
    write_manifest,
)
from ..model.network import DenseNet
from ..int8.calibration import Calibration, check_calibration_precision, engine_calibration, load_calibration
from .memory import check_build_memory
from ..progress import Progress, quiet, reporting, seconds, step
from ..model.registry import (ModelInfo, checkpoint_labels, get_model_info, model_config, model_record, reference_model,
                       weights_path)
from .spec import BatchRange, BuildSpec, Int8Ranges, Precision, check_image_size, check_seed
from .verify import Comparison, by_batch_size, check_finite, compare
from ..version import __version__

Results = list[tuple[int, Comparison]]


@dataclasses.dataclass(frozen=True)
class Artifact:
    """An engine folder on disk and its manifest (``load`` makes it an ``Engine`` that runs)."""

    path: Path
    manifest: EngineManifest

    @property
    def file(self) -> Path:
        """The engine's main file (what C++ and other runtimes load)."""
        return self.path / self.manifest.main_file


def default_name(model: str, backend: str, precision: Precision, batch: BatchRange, image_size: int) -> str:
    return f"{model}-{backend}-{precision}-b{str(batch).replace(':', '-')}-{image_size}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A build, decided and checked: what is compiled, how, and where it goes."""

    backend: Backend
    spec: BuildSpec
    net: DenseNet
    model: dict[str, Any]  # registry.model_record
    target: Path
    preprocessing: Preprocessing | None
    calibration: Calibration | None
    quantized: torch.nn.Module | None  # the fake-quantized model, for int8
    placement: Int8Placement  # whose Q/DQ an int8 engine runs (the backend's), for compile and the gate


def build(
    model: str = MODEL,
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    precision: str | Precision = PRECISION,
    backend: str = BACKEND,
    device: str | None = None,
    batch: str | int | BatchRange = BATCH,
    image_size: int | None = None,
    output: str | os.PathLike = ENGINES,
    name: str | None = None,
    format: str | None = None,
    threads: int | None = None,
    options: dict[str, Any] | None = None,
    force: bool = False,
    verify: bool = True,
    seed: int = RANDOM_SEED,
    overrides: dict[str, Any] | None = None,
    calibration: str | os.PathLike | None = None,
    preprocess: Preprocessing | None = None,
    progress: Progress = quiet,
    speed_check: bool = True,
) -> Artifact:
    """Build preset ``model`` into a verified engine folder ``output/name``.

    ``weights``: a checkpoint path (or ``"imagenet"``); without it the weights are random,
    drawn with ``seed`` so that ``verify`` can draw them again. ``precision``: fp32, fp16, bf16,
    or int8 with ``calibration`` (a folder ``densenet_trt.int8.quantize.calibrate`` wrote for this
    model, weights and image size). ``backend``: ``auto`` or one of ``backends.BACKENDS``;
    ``device``: default the backend's preferred here. ``batch``: ``N`` or ``MIN:OPT:MAX``.
    ``name``: one plain folder name (default ``MODEL-BACKEND-PRECISION-bBATCH-SIZE``);
    ``force`` replaces an existing one. ``format``: default the backend's first. ``threads``:
    CPU threads, recorded for ``load``. ``options``: backend settings (TensorRT's
    workspace_size, ...). ``verify=False`` skips the accuracy gate and says so in the manifest.
    ``overrides``: DenseNet arguments replacing the preset's. ``preprocess``: how images
    become input, recorded for ``predict``; default the preset family's where its channels
    fit. ``progress`` gets a line as each stage starts. ``speed_check=False`` skips int8's timing against float32.
    """
    plan = plan_build(
        model, weights=weights, num_classes=num_classes, precision=precision, backend=backend,
        device=device, batch=batch, image_size=image_size, output=output, name=name, format=format,
        threads=threads, options=options, force=force, seed=seed, overrides=overrides,
        calibration=calibration, preprocess=preprocess, progress=progress,
    )
    # Room for the artifact first, said before the work: twice the float32 weights.
    size = 2 * 4 * sum(p.numel() for p in plan.net.parameters())
    timed = speed_check and plan.spec.precision is Precision.INT8
    with torch_threads(plan.spec.threads), atomic_dir(plan.target, force, expected_bytes=size) as folder:
        manifest = compile_engine(plan, folder, progress)
        engine = Engine(folder, manifest, plan.backend.load(folder, manifest)) if verify or timed else None
        accuracy = gate_engine(plan, engine, progress) if verify else AccuracyRecord.skipped("built with verify=False")
        speed = check_int8_speed(engine, functools.partial(float32_engine, plan), progress) if timed else None
        manifest = dataclasses.replace(manifest, accuracy=accuracy, int8_speed=speed)
        write_manifest(folder, manifest)
    progress(f"wrote {plan.target}")
    return Artifact(plan.target, manifest)


# ---------------------------------------------------------------------------------------------
# Plan: every refusal before any work
# ---------------------------------------------------------------------------------------------


def plan_build(
    model: str, *, weights, num_classes, precision, backend, device, batch, image_size, output,
    name, format, threads, options, force, seed, overrides, calibration, preprocess, progress,
) -> Plan:
    """Check every input and decide the build; nothing is created but the output folder."""
    info = get_model_info(model)
    if name is not None:
        entry_path(output, name)
    precision = Precision.parse(precision)
    batch = BatchRange.parse(batch)
    check_dla_batch(options or {}, batch)
    overrides = dict(overrides or {})
    size = check_image_size(info, image_size, len(overrides.get("block_config", info.config["block_config"])))
    check_build_memory(model_config(model, num_classes, **overrides), batch, size)
    writable_folder(output, "give another output=DIR", create=False)
    check_calibration_precision(precision, calibration)
    chosen, device = _choose_backend(backend, precision, device, progress)
    fmt = _check_backend_settings(chosen, format, options)
    checkpoint = weights_path(info, weights)
    if checkpoint is None:
        progress("no weights: random weights (speed is real, predictions are not)")
    net = reference_model(model, checkpoint, num_classes, seed, overrides)
    record = model_record(model, net, checkpoint, seed, overrides)
    cal, quantized = _calibration(calibration, record, size, net, progress)
    placement = chosen.int8_placement
    ranges = None if cal is None or not placement.own else Int8Ranges(
        cal.onnxruntime_ranges(), cal.float_layers, str(cal.path.resolve()))
    steps = _preprocessing(info, size, net.in_channels, preprocess, cal)
    out_dir = writable_folder(output, "give another output=DIR")
    target = entry_path(out_dir, name or default_name(model, chosen.name, precision, batch, size))
    if target.exists() and not force:
        raise DenseNetTRTError(f"{target} exists; pass force=True to replace it")
    spec = BuildSpec(
        precision=precision, batch=batch, image_size=size, in_channels=net.in_channels, device=device,
        format=fmt, threads=threads, cache_dir=str(out_dir), options=dict(options or {}), int8_ranges=ranges,
    )
    return Plan(chosen, spec, net, record, target, steps, cal, quantized, placement)


def _choose_backend(name: str, precision: Precision, device: str | None, progress: Progress) -> tuple[Backend, str]:
    """The backend and device: ``auto``'s choice (said), or the one named, checked."""
    if name == "auto":
        chosen, auto_device, reason = choose_backend(precision)
        progress(f"backend auto: {chosen.name} on {auto_device}, because {reason}")
        device = device or auto_device
    else:
        chosen = get_backend(name)
        state = chosen.available()
        if not state.ok:
            raise DenseNetTRTError(state.message(chosen.name))
        device = device or chosen.devices[0]
    if device not in chosen.devices:
        raise DenseNetTRTError(
            f"backend {chosen.name} cannot run on {device} here; it can use {', '.join(chosen.devices)}"
        )
    can = chosen.precisions(device)
    if precision not in can:
        raise DenseNetTRTError(
            f"backend {chosen.name} cannot do {precision} on this {device}; it can do "
            f"{', '.join(can) or 'nothing here'}" + _other_backends_hint(precision, chosen.name)
        )
    return chosen, device


def _other_backends_hint(precision: Precision, current: str) -> str:
    others = [
        f"{b.name} ({d})" for b in BACKENDS.values() if b.name != current and b.available().ok
        for d in b.devices if precision in b.precisions(d)
    ]
    return f"; {precision} is available here with {', '.join(others)}" if others else ""


def _check_backend_settings(chosen: Backend, fmt: str | None, options: dict[str, Any] | None) -> str:
    """The artifact format (default: the backend's first), after checking it and the options."""
    names = chosen.settings.names()
    unknown = sorted(set(options or {}) - set(names))
    if unknown:
        owners = [b.name for b in BACKENDS.values() if set(unknown) & set(b.settings.names())]
        whose = f"options of backend {', '.join(owners)}" if owners else "no backend's options"
        raise DenseNetTRTError(
            f"backend {chosen.name} takes no option {', '.join(unknown)} ({whose}; it takes "
            f"{', '.join(names) or 'none'})"
        )
    fmt = fmt or chosen.formats[0]
    if fmt not in chosen.formats:
        raise DenseNetTRTError(f"backend {chosen.name} has no format {fmt!r}; it writes {', '.join(chosen.formats)}")
    chosen.settings.from_options(dict(options or {}))  # the values, checked before any work
    return fmt


def _calibration(
    path: str | os.PathLike | None, record: dict[str, Any], size: int, net: DenseNet, progress: Progress
) -> tuple[Calibration | None, torch.nn.Module | None]:
    """The calibration at ``path``, checked against the model, and its fake-quantized model."""
    if path is None:
        return None, None
    cal = load_calibration(path)
    cal.check_model(record, size, net.in_channels)
    progress(f"int8 from calibration {cal.path} ({cal.method})" + (f"; {SYNTHETIC_CALIBRATION}" if cal.synthetic else ""))
    return cal, cal.quantized_model(net)


def _preprocessing(info: ModelInfo, size: int, in_channels: int, given: Preprocessing | None,
                   cal: Calibration | None) -> Preprocessing | None:
    """What the manifest records: ``given``, checked against the input and the calibration's
    (an int8 engine runs on images preprocessed as it was calibrated); else the calibration's,
    where it read images; else the preset's."""
    calibrated = None if cal is None else cal.preprocessing
    if given is None:
        return calibrated or info.preprocessing(size, in_channels)
    if given.crop != size or given.channels != in_channels:
        raise DenseNetTRTError(
            f"the preprocessing gives {given.channels}x{given.crop}x{given.crop} images but the "
            f"model takes {in_channels}x{size}x{size}"
        )
    if calibrated is not None and given != calibrated:
        raise DenseNetTRTError(
            f"the preprocessing asked for ({_steps(given)}) is not the one {cal.path} was calibrated "
            f"with ({_steps(calibrated)}); leave out preprocess=PRESET and mean=M std=S to use the "
            "calibration's, or calibrate with these"
        )
    return given


def _steps(p: Preprocessing) -> str:
    return f"resize {p.resize}, crop {p.crop}, mean {list(p.mean)}, std {list(p.std)}"


# ---------------------------------------------------------------------------------------------
# Compile
# ---------------------------------------------------------------------------------------------


def compile_engine(plan: Plan, folder: Path, progress: Progress) -> EngineManifest:
    """The backend writes the artifact into ``folder``; returns its manifest (not yet gated)."""
    spec = plan.spec
    doing = (f"building {plan.model['name']} with {plan.backend.name} ({spec.format}, {spec.precision}, "
             f"batch {spec.batch}, {spec.image_size}x{spec.image_size}, {spec.device})")
    with step(progress, doing, "built the engine") as took, reporting(progress):
        # Backends cast and move the model they get; the eager reference stays float32 on the CPU.
        own = plan.quantized is None or plan.placement.own  # the float model
        settings = plan.backend.build(copy.deepcopy(plan.net if own else plan.quantized), spec, folder)
    files = hash_files(folder, but=MANIFEST)
    expected = plan.backend.files(spec.format)
    if set(files) != set(expected):
        raise DenseNetTRTError(
            f"backend {plan.backend.name} wrote {sorted(files)}, not its files {list(expected)}"
        )
    return _manifest(plan, settings, round(took.seconds, 3), files, expected[0])


def float32_engine(plan: Plan, folder: Path) -> Engine:
    """The same build at fp32 (the float32 model, no calibration), compiled into ``folder`` and
    loaded: what an int8 engine is timed against."""
    spec = dataclasses.replace(plan.spec, precision=Precision.FP32, int8_ranges=None)
    float32 = dataclasses.replace(plan, spec=spec, calibration=None, quantized=None)
    manifest = compile_engine(float32, folder, quiet)
    return Engine(folder, manifest, plan.backend.load(folder, manifest))


def _manifest(plan: Plan, settings: dict[str, Any], seconds: float, files: dict[str, str], main: str) -> EngineManifest:
    spec, net = plan.spec, plan.net
    rows = "batch" if spec.batch.dynamic else spec.batch.min
    io = str(plan.backend.io_dtype(spec.precision)).removeprefix("torch.")
    return EngineManifest(
        model=parse(ModelRecord, plan.model, "the model record"),
        backend=plan.backend.name, format=spec.format, precision=spec.precision, tf32=spec.tf32, batch=spec.batch,
        image_size=spec.image_size, in_channels=net.in_channels,
        input=TensorRecord(INPUT_NAME, io, [rows, net.in_channels, spec.image_size, spec.image_size]),
        output=TensorRecord(OUTPUT_NAME, io, [rows, net.classifier.out_features]),
        threads=spec.threads, preprocessing=plan.preprocessing,
        calibration=None if plan.calibration is None else parse(
            CalibrationRecord, plan.calibration.record(), str(plan.calibration.path)),
        device=parse(DeviceRecord, device_info(spec.device), "this machine"),
        versions={"densenet-trt": __version__, "torch": torch.__version__, **plan.backend.versions()},
        backend_settings=settings,
        build=BuildRecord(seconds, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
        files=files, main_file=main, accuracy=AccuracyRecord.skipped("not checked yet"),
        labels=checkpoint_labels(plan.model),
    )


# ---------------------------------------------------------------------------------------------
# Gate
# ---------------------------------------------------------------------------------------------


def gate_engine(plan: Plan, engine: Engine, progress: Progress) -> AccuracyRecord:
    """The accuracy gate: ``engine`` against eager float32 (and, for int8, against the
    fake-quantized model); raises if it is outside its tolerance, so nothing is written."""
    sizes = plan.spec.batch.sizes()
    progress(f"checking against eager float32 PyTorch at batch {', '.join(map(str, sizes))}")
    if plan.calibration is None:
        inputs = [example_input(n, engine.image_size, engine.in_channels, seed=n) for n in sizes]
        results = gate(plan.net, engine, inputs, engine.manifest.gate_tolerance(), progress)
        checks = [("eager PyTorch", f"the {engine.precision}{' TF32' * engine.manifest.tf32} tolerance", "", results)]
        simulated = None
    else:
        simulated, results = int8_gate(plan.net, plan.quantized, engine, sizes, plan.calibration, plan.placement,
                                       progress)
        checks = [
            ("ModelOpt's fake-quantized model", "the int8 tolerance",
             f"; {engine.backend} does not reproduce the calibrated INT8 arithmetic (keeping the layer "
             "it strays on in float, e.g. calibrating with exclude=['stem'], can help)", simulated),
            ("eager float32 PyTorch", "the calibration's tolerance", "", results),
        ]
        simulated = simulated or None  # none where the backend placed its own Q/DQ
    for reference, tolerance, hint, checked in checks:
        failed = [(n, c) for n, c in checked if not c.passes()]
        if failed:
            n, c = failed[0]
            raise DenseNetTRTError(
                f"the {engine.precision} engine differs from {reference} beyond {tolerance} at batch "
                f"{n}: {c}{hint}; nothing was written (verify=False keeps it anyway)"
            )
    return AccuracyRecord(
        verified=True, reason=None, reference="eager PyTorch float32",
        tolerance=results[0][1].tolerance, passed=True,
        results=_results(results), vs_fake_quantized=None if simulated is None else {
            "tolerance": dataclasses.asdict(simulated[0][1].tolerance), "passed": True,
            "results": _results(simulated)},
    )


def _results(results: Results) -> list[dict[str, Any]]:
    return [{"batch": n, **c.as_dict()} for n, c in results]


def gate(net: torch.nn.Module, engine: Engine, inputs: list[torch.Tensor], tolerance, progress: Progress = quiet) -> Results:
    """The engine against eager float32 ``net`` on each batch of ``inputs``."""
    results = []
    for x in inputs:
        start = time.perf_counter()
        with torch.no_grad():
            ref = net(x)
        out = engine(x)
        check_finite({"eager float32 PyTorch": ref, f"the {engine.precision} engine": out}, len(x), "random inputs")
        results.append((len(x), compare(ref, out, tolerance)))
        progress(f"  batch {len(x)}: {results[-1][1]} ({seconds(time.perf_counter() - start)})")
    return results


def int8_gate(net: torch.nn.Module, quantized: torch.nn.Module, engine: Engine, sizes: list[int],
              calibration: Calibration, placement: Int8Placement,
              progress: Progress = quiet) -> tuple[Results, Results]:
    """An int8 engine on the calibration's gate inputs (real images where it had them; repeated,
    and said to be, to fill a batch larger than they are many), at each batch size: against
    ModelOpt's fake-quantized model (what the INT8 kernels must reproduce, within the int8
    tolerance) and against eager float32 (within the calibration's tolerance); an engine whose
    backend placed its own Q/DQ (``placement``) only against float32, within that placement's."""
    tolerance = calibration.tolerance_for(placement)
    inputs = calibration.gate_inputs()
    simulated, floating = [], []
    for n in sizes:
        start = time.perf_counter()
        x = inputs.repeat((n + len(inputs) - 1) // len(inputs), 1, 1, 1)[:n]
        distinct = min(n, len(inputs))
        out = engine(x)
        with torch.no_grad():
            ref, fake = net(x), None if placement.own else quantized(x)
        faked = {} if fake is None else {"ModelOpt's fake-quantized model": fake}
        check_finite({"the int8 engine": out, **faked, "eager float32 PyTorch": ref}, n,
                     f"gate inputs of {calibration.path}")
        simulated += [] if fake is None else [(n, compare(fake, out, Precision.INT8.tolerance, distinct))]
        floating.append((n, compare(ref, out, tolerance, distinct)))
        against = f"against fake-quantized {simulated[-1][1]}; " if simulated else ""
        progress(f"  batch {n}: {against}against float32 {floating[-1][1]} ({seconds(time.perf_counter() - start)})")
    return simulated, floating


# ---------------------------------------------------------------------------------------------
# Verify a built engine again
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verification:
    """What ``verify_engine`` compared, and its verdict."""

    results: Results
    inputs: int  # distinct inputs compared
    source: str  # where the inputs came from

    @property
    def passed(self) -> bool:
        return all(c.passes() for _, c in self.results)

    def failure(self) -> str | None:
        """Why the engine fails (None when it passes)."""
        failed = [(n, c) for n, c in self.results if not c.passes()]
        if not failed:
            return None
        n, c = failed[0]
        return f"engine differs from its reference at batch {n}: {c}"


def verify_engine(
    path: str | os.PathLike,
    samples: int = VERIFY_SAMPLES,
    *,
    weights: str | os.PathLike | None = None,
    seed: int | None = None,
    progress: Progress = quiet,
) -> Verification:
    """The engine at ``path`` against eager float32 PyTorch on ``samples`` distinct random
    inputs (drawn with ``seed``; default a fresh one), in batches within its range; int8
    engines on their calibration's gate inputs instead. The eager model is made again from the
    manifest: the same random weights, or the checkpoint (``weights`` where it has moved; its
    sha256 must match)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DenseNetTRTError(f"samples must be a positive integer, got {samples!r}")
    engine = load(path)
    check_images_memory(samples, engine.in_channels, engine.image_size)
    tolerance = None if engine.precision is Precision.INT8 else engine.manifest.gate_tolerance()
    net = engine_reference(engine, weights)
    sizes = _chunks(samples, engine.batch.min, engine.batch.opt)
    if tolerance is None:
        cal = engine_calibration(engine)
        progress("comparing on the calibration's gate inputs with fake-quantized and float32 PyTorch")
        placement = get_backend(engine.backend).int8_placement
        simulated, floating = int8_gate(net, cal.quantized_model(net), engine, sizes, cal, placement)
        for line in by_batch_size(simulated, " against fake-quantized") + by_batch_size(floating, " against float32"):
            progress(line)
        distinct = min(len(cal.gate_inputs()), sum(sizes))
        return Verification(simulated + floating, distinct, f"the calibration's {distinct} gate inputs")
    seed = secrets.randbelow(2**31) if seed is None else check_seed(seed)
    progress(f"comparing {sum(sizes)} distinct inputs (seed {seed}) with eager float32 PyTorch")
    everything = example_input(sum(sizes), engine.image_size, engine.in_channels, seed=seed)
    inputs = list(torch.split(everything, sizes))
    results = gate(net, engine, inputs, tolerance)
    for line in by_batch_size(results):
        progress(line)
    return Verification(results, sum(sizes), f"{sum(sizes)} distinct random inputs (seed {seed})")


def _chunks(samples: int, smallest: int, preferred: int) -> list[int]:
    """Batch sizes adding up to at least ``samples``, each ``preferred`` but the last, which is
    at least ``smallest``."""
    sizes = [preferred] * (samples // preferred)
    if samples % preferred:
        sizes.append(max(samples % preferred, smallest))
    return sizes
