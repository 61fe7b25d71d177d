"""Build, load and verify engines: the tool's main job.

``build`` makes the model, compiles it with a backend into a temporary engine folder, loads
that engine back and checks it against eager float32 PyTorch (the accuracy gate), writes the
manifest, and only then moves the folder into place.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import secrets
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .version import __version__
from .artifact import (
    SCHEMA,
    SCHEMA_VERSION,
    atomic_dir,
    check_files,
    device_info,
    entry_path,
    hash_files,
    read_manifest,
    sha256_file,
    write_manifest,
)
from .backends import choose_backend, get_backend
from .backends.base import Backend, Engine
from .data import Preprocessing, preprocessing
from .errors import DenseNetTRTError
from .capture import INPUT_NAME, OUTPUT_NAME, example_input
from .models import DenseNet
from .registry import get_model_info, model_record, reference_model, weights_path
from .spec import BatchRange, BuildSpec, check_image_size, check_precision
from .verify import TOLERANCES, Comparison, compare

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    pass


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A built engine: its folder and manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def file(self) -> Path:
        """The engine's main file (what C++ and other runtimes load)."""
        return self.path / self.manifest["main_file"]


def default_name(model: str, backend: str, precision: str, batch: BatchRange, image_size: int) -> str:
    return f"{model}-{backend}-{precision}-b{str(batch).replace(':', '-')}-{image_size}"


def build(
    model: str = "densenet121",
    *,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    precision: str = "fp32",
    backend: str = "auto",
    device: str | None = None,
    batch: str | int | BatchRange = 1,
    image_size: int | None = None,
    output: str | os.PathLike = "engines",
    name: str | None = None,
    format: str | None = None,
    threads: int | None = None,
    options: dict[str, Any] | None = None,
    force: bool = False,
    verify: bool = True,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    calibration: str | os.PathLike | None = None,
    preprocess: Preprocessing | None = None,
    progress: Progress = quiet,
) -> Artifact:
    """Build preset ``model`` into a verified engine folder ``output/name``.

    Args:
        weights: checkpoint path (or ``"imagenet"``); without it the weights are random, drawn
            with ``seed`` so that ``verify`` can draw them again.
        precision: fp32, fp16, bf16, or int8 with ``calibration``.
        backend: ``auto`` or one of ``densenet_trt.backends.BACKENDS``.
        device: ``cpu`` or ``cuda``; default: the backend's preferred device here.
        batch: ``N`` or ``MIN:OPT:MAX``.
        format: the backend's artifact format; default: its first.
        threads: CPU threads for building and running (recorded; ``load`` uses it).
        options: backend settings (TensorRT: workspace_size, optimization_level, ...).
        verify: run the accuracy gate; ``False`` skips it and says so in the manifest.
        overrides: DenseNet arguments that replace the preset's (recorded in the manifest).
        calibration: for int8, a folder written by ``densenet_trt.quantize.calibrate`` (the
            ``calibrate`` command) for this model, weights and image size.
        preprocess: how images become the engine's input, recorded in the manifest for
            ``predict``; default: the preset family's (imagenet or cifar) at the image size,
            where its channels match the model's.
        progress: called with a line as each stage starts.
    """
    info = get_model_info(model)
    if name is not None:
        entry_path(output, name)  # refused before any work
    batch = BatchRange.parse(batch)
    blocks = len((overrides or {}).get("block_config", info.config["block_config"]))
    size = check_image_size(info, image_size, blocks)
    if check_precision(precision) == "int8" and calibration is None:
        raise DenseNetTRTError(
            "int8 needs a calibration: make one with `densenet-trt calibrate --model "
            f"{model} --data PATH` and pass it with --calibration"
        )
    if calibration is not None and precision != "int8":
        raise DenseNetTRTError(f"--calibration is for --precision int8, not {precision}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise DenseNetTRTError(f"threads must be a positive integer, got {threads!r}")

    if backend == "auto":
        chosen, auto_device, reason = choose_backend(precision)
        progress(f"backend auto: {chosen.name} on {auto_device}, because {reason}")
        device = device or auto_device
    else:
        chosen = get_backend(backend)
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
    unknown = sorted(set(options or {}) - set(chosen.option_names))
    if unknown:
        raise DenseNetTRTError(
            f"backend {chosen.name} takes no option {', '.join(unknown)} (the TensorRT options "
            "--workspace-gb, --opt-level, --timing-cache, --hardware-compatible and "
            "--version-compatible apply to --backend tensorrt)"
        )
    fmt = format or chosen.formats[0]
    if fmt not in chosen.formats:
        raise DenseNetTRTError(
            f"backend {chosen.name} has no format {fmt!r}; it writes {', '.join(chosen.formats)}"
        )

    # The model first: a checkpoint that does not fit is refused before anything is created.
    checkpoint = weights_path(info, weights)
    if checkpoint is None:
        progress("no --weights: random weights (speed is real, predictions are not)")
    overrides = dict(overrides or {})
    net = reference_model(model, checkpoint, num_classes, seed, overrides)
    record = model_record(model, net, checkpoint, seed, overrides)
    quantized, cal = None, None
    if calibration is not None:
        from .quantize import load_calibration

        cal = load_calibration(calibration)
        cal.check_model(record, size, net.in_channels)
        quantized = cal.quantized_model(net)
        progress(f"int8 from calibration {cal.path} ({cal.method})")

    out_dir = Path(output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DenseNetTRTError(f"cannot create output folder {str(out_dir)!r}: {e.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise DenseNetTRTError(f"output folder {str(out_dir)!r} is not writable")
    target = entry_path(out_dir, name or default_name(model, chosen.name, precision, batch, size))
    if target.exists() and not force:
        raise DenseNetTRTError(f"{target} exists; pass --force to replace it")

    spec = BuildSpec(
        precision=precision, batch=batch, image_size=size, in_channels=net.in_channels,
        device=device, format=fmt, threads=threads, cache_dir=str(out_dir), options=dict(options or {}),
    )
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": record,
        "backend": chosen.name,
        "format": fmt,
        "precision": precision,
        "batch": dataclasses.asdict(batch),
        "image_size": size,
        "in_channels": net.in_channels,
        "input": {"name": INPUT_NAME, "dtype": "float32",
                  "shape": ["batch" if batch.dynamic else batch.min, net.in_channels, size, size]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32",
                   "shape": ["batch" if batch.dynamic else batch.min, net.classifier.out_features]},
        "threads": threads,
        "preprocessing": _preprocessing(info.family, size, net.in_channels, preprocess),
        "calibration": None if cal is None else cal.record(),
        "device": device_info(device),
        "versions": {"densenet-trt": __version__, "torch": torch.__version__, **chosen.versions()},
    }

    with torch_threads(threads), atomic_dir(target, force) as folder:
        progress(f"building {model} with {chosen.name} ({fmt}, {precision}, batch {batch}, "
                 f"{size}x{size}, {device})")
        start = time.perf_counter()
        # Backends cast and move the model they get; the eager reference stays float32 on the CPU.
        to_build = net if quantized is None else quantized
        manifest["backend_settings"] = chosen.build(copy.deepcopy(to_build), spec, folder)
        manifest["build"] = {
            "seconds": round(time.perf_counter() - start, 3),
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        files = hash_files(folder)
        manifest["files"] = files
        manifest["main_file"] = next(iter(files)) if len(files) == 1 else _main_file(files)
        if verify:
            progress(f"checking against eager float32 PyTorch at batch {', '.join(map(str, batch.sizes()))}")
            engine = Engine(folder, manifest, chosen.load(folder, manifest))
            if cal is None:
                results = gate(net, engine, batch.sizes(), seed_base=0)
                manifest["accuracy"] = {"verified": True, **_accuracy_record(results)}
                checks = [("eager PyTorch", f"the {precision} tolerance", "", results)]
            else:
                simulated, results = int8_gate(net, quantized, engine, batch.sizes(), cal)
                manifest["accuracy"] = {"verified": True, **_accuracy_record(results),
                                        "vs_fake_quantized": _accuracy_record(simulated)}
                checks = [
                    ("ModelOpt's fake-quantized model", "the int8 tolerance",
                     f"; {chosen.name} does not reproduce the calibrated INT8 arithmetic (keeping "
                     "the layer it strays on in float, e.g. `calibrate --exclude stem`, can help)",
                     simulated),
                    ("eager float32 PyTorch", "the calibration's tolerance", "", results),
                ]
            for reference, tolerance, hint, checked in checks:
                failed = [(n, c) for n, c in checked if not c.passes()]
                if failed:
                    n, c = failed[0]
                    raise DenseNetTRTError(
                        f"the {precision} engine differs from {reference} beyond {tolerance} at "
                        f"batch {n}: {c}{hint}; nothing was written (--no-verify keeps it anyway)"
                    )
        else:
            manifest["accuracy"] = {"verified": False, "reason": "built with --no-verify"}
        write_manifest(folder, manifest)
    progress(f"wrote {target}")
    return Artifact(target, manifest)


def _preprocessing(family: str, size: int, in_channels: int, given: Preprocessing | None) -> dict | None:
    steps = given or preprocessing(family, size)
    if steps.crop != size or steps.channels != in_channels:
        if given is not None:
            raise DenseNetTRTError(
                f"the preprocessing gives {steps.channels}x{steps.crop}x{steps.crop} images but the "
                f"model takes {in_channels}x{size}x{size}"
            )
        return None
    return steps.as_dict()


def _other_backends_hint(precision: str, current: str) -> str:
    from .backends import BACKENDS

    others = [
        f"{b.name} ({d})" for b in BACKENDS.values() if b.name != current and b.available().ok
        for d in b.devices if precision in b.precisions(d)
    ]
    return f"; {precision} is available here with {', '.join(others)}" if others else ""


def _main_file(files: dict[str, str]) -> str:
    # OpenVINO IR: model.xml names model.bin.
    return next(f for f in files if f.endswith(".xml"))


class torch_threads:
    """Set torch's CPU threads for the block."""

    def __init__(self, threads: int | None):
        self.threads = threads
        self.before = torch.get_num_threads()

    def __enter__(self):
        if self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def gate(net: torch.nn.Module, engine: Engine, sizes: list[int], seed_base: int) -> list[tuple[int, Comparison]]:
    """The engine against eager float32 ``net`` on fixed-seed inputs at each batch size."""
    tol = TOLERANCES[engine.precision]
    results = []
    for n in sizes:
        x = example_input(n, engine.image_size, engine.in_channels, seed=seed_base + n)
        with torch.no_grad():
            ref = net(x)
        results.append((n, compare(ref, engine(x), tol)))
    return results


def int8_gate(
    net: torch.nn.Module, quantized: torch.nn.Module, engine: Engine, sizes: list[int], calibration
) -> tuple[list[tuple[int, Comparison]], list[tuple[int, Comparison]]]:
    """An int8 engine on the calibration's gate inputs (real images where it had them), at each
    batch size: against ModelOpt's fake-quantized model (what the INT8 kernels must reproduce,
    within the int8 tolerance) and against eager float32 (within the calibration's tolerance)."""
    inputs = calibration.gate_inputs()
    simulated, floating = [], []
    for n in sizes:
        x = inputs.repeat((n + len(inputs) - 1) // len(inputs), 1, 1, 1)[:n]
        out = engine(x)
        with torch.no_grad():
            simulated.append((n, compare(quantized(x), out, TOLERANCES["int8"])))
            floating.append((n, compare(net(x), out, calibration.tolerance)))
    return simulated, floating


def _accuracy_record(results: list[tuple[int, Comparison]]) -> dict[str, Any]:
    tol = results[0][1].tolerance
    return {
        "reference": "eager PyTorch float32",
        "tolerance": dataclasses.asdict(tol),
        "passed": all(c.passes() for _, c in results),
        "results": [{"batch": n, **c.as_dict()} for n, c in results],
    }


def _runnable_backend(folder: Path, manifest: dict[str, Any]) -> Backend:
    """The backend of the engine in ``folder``, after checking its files' checksums and that
    this machine can run it."""
    check_files(folder, manifest)
    backend = get_backend(manifest["backend"])
    state = backend.available()
    if not state.ok:
        raise DenseNetTRTError(state.message(backend.name))
    backend.check_compatible(manifest)
    return backend


def load(path: str | os.PathLike, *, threads: int | None = None) -> Engine:
    """The engine at ``path`` (its folder, manifest or main file), after checking the files'
    checksums and that this machine can run it."""
    folder, manifest = read_manifest(path)
    backend = _runnable_backend(folder, manifest)
    if threads is not None:
        manifest = {**manifest, "threads": threads}
    return Engine(folder, manifest, backend.load(folder, manifest))


def compatibility(path: str | os.PathLike) -> tuple[dict[str, Any], str | None]:
    """The manifest of the engine at ``path`` and why this machine cannot run it (None if it can)."""
    folder, manifest = read_manifest(path)
    try:
        _runnable_backend(folder, manifest)
    except DenseNetTRTError as e:
        return manifest, str(e)
    return manifest, None


def engine_reference(engine: Engine, fix: str, weights: str | os.PathLike | None = None) -> DenseNet:
    """The eager float32 model ``engine`` was built from, made again from its manifest: the same
    random weights, or its checkpoint (at ``weights`` where it has moved; its sha256 must match).
    ``fix`` says what to do when the checkpoint is missing or another one."""
    record = engine.manifest["model"]
    checkpoint = None
    if record["weights"] is not None:
        checkpoint = Path(weights or record["weights"]["file"])
        if not checkpoint.is_file():
            raise DenseNetTRTError(
                f"the engine {engine.path} was built from {record['weights']['file']}, which is "
                f"not there; {fix}"
            )
        if sha256_file(checkpoint) != record["weights"]["sha256"]:
            raise DenseNetTRTError(
                f"{checkpoint} is not the checkpoint this engine was built from (sha256 differs); {fix}"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return reference_model(
            record["name"], checkpoint, record["num_classes"], record["seed"], record["overrides"]
        )


def verify_engine(
    path: str | os.PathLike,
    samples: int = 16,
    *,
    weights: str | os.PathLike | None = None,
    seed: int | None = None,
    progress: Progress = quiet,
) -> list[tuple[int, Comparison]]:
    """The engine at ``path`` against eager float32 PyTorch on ``samples`` fresh random inputs,
    in batches within its range. The eager model is made again from the manifest: the same
    random weights, or the checkpoint (``weights`` where it has moved; its sha256 must match)."""
    if not isinstance(samples, int) or samples < 1:
        raise DenseNetTRTError(f"samples must be a positive integer, got {samples!r}")
    engine = load(path)
    net = engine_reference(engine, "pass its path with --weights", weights)
    sizes = _chunks(samples, engine.batch_min, engine.batch_opt)
    if engine.precision == "int8":
        cal = engine_calibration(engine)
        progress("comparing on the calibration's gate inputs with fake-quantized and float32 PyTorch")
        simulated, floating = int8_gate(net, cal.quantized_model(net), engine, sizes, cal)
        return simulated + floating
    seed = secrets.randbelow(2**31) if seed is None else seed
    progress(f"comparing {samples} samples (seed {seed}) with eager float32 PyTorch")
    return gate(net, engine, sizes, seed_base=seed)


def engine_calibration(engine: Engine):
    """The calibration an int8 engine was built from, checked against its manifest."""
    from .quantize import REPORT_FILE, load_calibration

    record = engine.manifest["calibration"]
    cal = load_calibration(record["path"])
    if sha256_file(cal.path / REPORT_FILE) != record["report_sha256"]:
        raise DenseNetTRTError(
            f"{cal.path} is not the calibration {engine.path} was built from (its report differs)"
        )
    return cal


def _chunks(samples: int, smallest: int, preferred: int) -> list[int]:
    """Batch sizes adding up to at least ``samples``, each ``preferred`` but the last, which is
    at least ``smallest``."""
    sizes = [preferred] * (samples // preferred)
    if samples % preferred:
        sizes.append(max(samples % preferred, smallest))
    return sizes
