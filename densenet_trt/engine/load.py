"""A built engine, loaded: the one ``Engine`` type every backend's artifact runs as, and what
``load`` checks first (the manifest, the files' sha256, that this machine can run it)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .artifact import check_files, sha256_file
from ..backends import Backend, get_backend
from ..backends.base import Runtime
from ..errors import DenseNetTRTError
from .manifest import EngineManifest, read_manifest
from ..model.network import DenseNet
from ..reading import input_file
from ..model.registry import reference_model
from ..machine import check_threads
from .spec import BatchRange, Precision

class Engine:
    """A built engine: call it on a float32 ``torch.Tensor`` or ``numpy`` array of shape
    (N, C, H, W), N within the built batch range, and get float32 logits (N, classes) on the
    CPU; the same for every backend. ``runtime`` is its backend's ``Runtime``, with the
    capabilities beyond running it (requests in flight, per-layer timing, ...)."""

    def __init__(self, path: Path, manifest: EngineManifest, runtime: Runtime):
        self.path = path
        self.manifest = manifest
        self.runtime = runtime

    @property
    def backend(self) -> str:
        return self.manifest.backend

    @property
    def precision(self) -> Precision:
        return self.manifest.precision

    @property
    def batch(self) -> BatchRange:
        return self.manifest.batch

    @property
    def image_size(self) -> int:
        return self.manifest.image_size

    @property
    def in_channels(self) -> int:
        return self.manifest.in_channels

    @property
    def device(self) -> str:
        return self.manifest.device.type

    def check_input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise DenseNetTRTError(f"input must be a torch.Tensor or numpy array, got {type(x).__name__}")
        expected = f"(N, {self.in_channels}, {self.image_size}, {self.image_size})"
        if x.dim() != 4:
            raise DenseNetTRTError(f"input has shape {tuple(x.shape)}; this engine takes {expected}")
        if x.dtype != torch.float32:
            raise DenseNetTRTError(
                f"input dtype is {str(x.dtype).replace('torch.', '')}; this engine takes float32 "
                f"(it runs in {self.precision} inside)"
            )
        if tuple(x.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            raise DenseNetTRTError(f"input has shape {tuple(x.shape)}; this engine takes {expected}")
        self.batch.check(int(x.shape[0]))
        return x.contiguous()

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits for ``x``; a runtime that fails on an input its manifest allows, or gives
        logits of another shape than the manifest's, is one error: the two disagree."""
        x = self.check_input(x)
        try:
            out = self.run(x)
        except DenseNetTRTError:
            raise
        except Exception as e:  # each runtime fails its own way on a graph of another shape
            raise DenseNetTRTError(f"{self.path}: {self.backend} failed on a {tuple(x.shape)} input "
                                   f"({_reason(e)}), which its manifest allows: {MISMATCH}") from e
        expected = (int(x.shape[0]), self.manifest.model.num_classes)
        if tuple(out.shape) != expected:
            raise DenseNetTRTError(f"{self.path}: the engine gave logits of shape {tuple(out.shape)}, its manifest "
                                   f"says {expected}: {MISMATCH}")
        return out.detach().to("cpu", torch.float32)

    def warmup(self, iterations: int = 3, batch_size: int | None = None) -> Engine:
        """Run the engine ``iterations`` times on zeros at ``batch_size`` (default its opt batch),
        so that the first real call does not pay for lazy initialisation (about 4 times a
        steady call, measured on ONNX Runtime); returns the engine: ``load(path).warmup()``."""
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise DenseNetTRTError(f"iterations must be a positive integer, got {iterations!r}")
        n = self.batch.opt if batch_size is None else self.batch.check(batch_size, "batch_size")
        x = torch.zeros(n, self.in_channels, self.image_size, self.image_size)
        for _ in range(iterations):
            self(x)
        return self

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The backend's runner without the input checks or the copy of the output to the CPU
        (what ``profile`` times): logits on the engine's device, in its dtype."""
        return self.runtime.run(x)

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Engine({m.model.name}, backend={m.backend}, format={m.format}, precision={m.precision}, "
            f"batch={m.batch}, image_size={m.image_size})"
        )


MISMATCH = "the manifest does not match the engine's model file; rebuild the engine"


def _reason(e: Exception) -> str:
    """``e``'s type and the first sentence of its message: runtimes' errors run to pages."""
    text = str(e).strip()
    reason = text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""
    return type(e).__name__ + (f": {reason}" if reason else "")


def runnable_backend(folder: Path, manifest: EngineManifest) -> Backend:
    """The backend of the engine in ``folder``, after checking its files' checksums and that
    this machine can run it."""
    backend = get_backend(manifest.backend)
    if manifest.format not in backend.formats:
        raise DenseNetTRTError(f"{folder}: backend {backend.name} has no format {manifest.format!r}; rebuild the engine")
    expected = backend.files(manifest.format)
    if set(manifest.files) != set(expected) or manifest.main_file != expected[0]:
        raise DenseNetTRTError(
            f"{folder}: the manifest lists files {sorted(manifest.files)} (main {manifest.main_file}), but a "
            f"{backend.name} {manifest.format} engine is {', '.join(expected)}; rebuild the engine"
        )
    if manifest.tf32 and "allow_tf32" not in backend.settings.names():
        raise DenseNetTRTError(f"{folder}: the manifest says tf32, which backend {backend.name} never builds "
                               "(a looser gate tolerance); rebuild the engine")
    check_files(folder, manifest.files, "rebuild the engine", "engine file")
    state = backend.available()
    if not state.ok:
        raise DenseNetTRTError(state.message(backend.name))
    backend.check_compatible(manifest)
    if manifest.precision not in backend.precisions(manifest.device.type):
        raise DenseNetTRTError(f"{folder}: the manifest says {manifest.precision} on {manifest.device.type}, which "
                               f"backend {backend.name} does not build: {MISMATCH}")
    return backend


def load(path: str | os.PathLike, *, threads: int | None = None) -> Engine:
    """The engine at ``path`` (its folder, manifest or main file), after checking the files'
    checksums and that this machine can run it; ``threads`` overrides the recorded CPU threads."""
    folder, manifest = read_manifest(path)
    backend = runnable_backend(folder, manifest)
    if threads is not None:
        manifest = _with_threads(manifest, threads)
    try:
        runtime = backend.load(folder, manifest)
    except DenseNetTRTError:
        raise
    except Exception as e:  # each runtime fails its own way on a file it cannot load
        raise DenseNetTRTError(
            f"{folder / manifest.main_file}: {backend.name} cannot load it ({_reason(e)}); rebuild the engine"
        ) from e
    return Engine(folder, manifest, runtime)


def _with_threads(manifest: EngineManifest, threads: int) -> EngineManifest:
    check_threads(threads)
    return dataclasses.replace(manifest, threads=threads)


def compatibility(path: str | os.PathLike) -> tuple[EngineManifest, str | None]:
    """The manifest of the engine at ``path`` and why this machine cannot run it (None if it can)."""
    folder, manifest = read_manifest(path)
    try:
        runnable_backend(folder, manifest)
    except DenseNetTRTError as e:
        return manifest, str(e)
    return manifest, None


def engine_reference(engine: Engine, weights: str | os.PathLike | None = None) -> DenseNet:
    """The eager float32 model ``engine`` was built from, made again from its manifest: the same
    random weights, or its checkpoint (at ``weights`` where it has moved; its sha256 must match)."""
    record = engine.manifest.model
    checkpoint = None
    if record.weights is None and weights is not None:
        raise DenseNetTRTError(
            f"the engine {engine.path} was built from random weights (seed {record.seed}); weights=PATH does not apply"
        )
    if record.weights is not None:
        checkpoint = Path(weights or record.weights.file)
        if not checkpoint.is_file():
            where = f"{checkpoint} does not exist" if weights else f"{record.weights.file} is not there"
            raise DenseNetTRTError(
                f"the engine {engine.path} was built from {record.weights.file}; {where}: pass the "
                "checkpoint's path as weights=PATH"
            )
        if sha256_file(input_file(checkpoint, "checkpoint")) != record.weights.sha256:
            raise DenseNetTRTError(
                f"{checkpoint} is not the checkpoint this engine was built from (sha256 differs); "
                "pass the original checkpoint as weights=PATH"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return reference_model(record.name, checkpoint, record.num_classes, record.seed, record.overrides)

