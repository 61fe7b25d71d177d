"""The Backend protocol every backend implements, and its availability answer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import nn

from ..machine import platform_name
from ..errors import DenseNetTRTError
from ..engine.spec import BuildSpec, Precision
from .settings import Settings

if TYPE_CHECKING:
    from ..int8.coverage import LayerPrecisions
    from ..engine.manifest import EngineManifest
    from ..profiling.throughput import Requests


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; if not, why and what fixes it (one line each)."""

    ok: bool
    reason: str = ""
    hint: str = ""

    def message(self, backend: str) -> str:
        return f"backend {backend} is not available: {self.reason}" + (f"; {self.hint}" if self.hint else "")


def check_native(manifest: EngineManifest, what: str) -> None:
    """Refuse compiled code (``what``) built for another operating system or CPU architecture."""
    here = platform_name()
    if manifest.device.platform != here:
        raise DenseNetTRTError(
            f"this {what} was built for {manifest.device.platform}; this machine is {here}: rebuild it here"
        )


def check_same_gpu(manifest: EngineManifest, capability: tuple[int, int], what: str) -> None:
    """Refuse GPU code (``what``) compiled for another compute capability."""
    gpu = manifest.device.gpu
    if gpu is not None and gpu.capability != tuple(capability):
        raise DenseNetTRTError(
            f"this {what} was compiled for compute capability {gpu.compute_capability} ({gpu.name}); this GPU "
            f"is {'.'.join(map(str, capability))}: rebuild it on this GPU"
        )


def check_same_torch(manifest: EngineManifest, what: str) -> None:
    """Refuse an AOTInductor package built with another torch: its generated code calls the
    libtorch it was compiled against."""
    built = manifest.versions.get("torch")
    if built != torch.__version__:
        raise DenseNetTRTError(f"this {what} was built with torch {built}, this machine has {torch.__version__}; "
                               "rebuild it here")


def no_triton_parameters(manifest: EngineManifest) -> dict[str, str]:
    """A runner that needs no parameters in config.pbtxt."""
    return {}


@dataclasses.dataclass(frozen=True)
class TritonTarget:
    """How Triton runs one kind of engine: ``setting`` is ("platform", NAME) or ("backend", NAME);
    ``files`` maps each engine file to its name in the model's version folder; ``kind`` is the
    instance kind, KIND_GPU or KIND_CPU. ``batched``: the runner takes Triton's batching
    (max_batch_size N, dims without the batch); False: max_batch_size 0 and the batch an explicit
    -1 dimension. ``parameters``: the config's parameters for the engine a manifest describes, its
    precision and thread count carried over; raises DenseNetTRTError, with the reason, where the
    runner cannot run that engine as it was verified."""

    setting: tuple[str, str]
    files: dict[str, str]
    input_name: str
    output_name: str
    kind: str
    batched: bool = True
    parameters: Callable[[EngineManifest], dict[str, str]] = no_triton_parameters


def triton_libtorch(file: str, kind: str) -> TritonTarget:
    """Triton's PyTorch runner for the TorchScript ``file``; it names tensors <name>__<index>."""
    return TritonTarget(("platform", "pytorch_libtorch"), {file: "model.pt"}, "input__0", "logits__0", kind)


def no_triton_runner(backend: str, fmt: str) -> str:
    """The sentence ``Backend.triton_target`` answers for a format Triton cannot run."""
    return f"Triton cannot serve the {fmt} format of backend {backend}"


@dataclasses.dataclass(frozen=True)
class Int8Placement:
    """Who places an int8 engine's Q/DQ pairs, which decides what the backend builds from and
    what the engine is gated against. ``MODELOPT`` (``own`` False): ModelOpt's, as calibrated;
    the backend compiles the fake-quantized model, and the engine is gated against it and
    against eager float32 within the calibration's tolerance. A backend's own (``own`` True):
    it places them in the float model from ``BuildSpec.int8_ranges``, and the engine is gated
    against eager float32 only, within the tolerance the calibration report records for it in
    its section ``name``."""

    name: str
    own: bool


MODELOPT = Int8Placement("modelopt", own=False)


class Runtime:
    """A loaded engine as its backend runs it: ``run`` (a float32 (N, C, H, W) tensor in, on the
    CPU or already on the engine's device; logits out, on any device, in any float dtype) and
    the capabilities its runtime has beyond that. A runtime that lacks one answers with a
    sentence saying so: no module outside ``backends/`` asks which backend it holds."""

    def __init__(self, folder: Path, manifest: EngineManifest,
                 call: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """``call``: what ``run`` does, for runtimes that add nothing else (subclasses override ``run``)."""
        self.folder, self.manifest, self._call = Path(folder), manifest, call

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(x)

    def in_flight(self, x: torch.Tensor, requests: int | None, threads: int) -> Requests | str:
        """Several requests on ``x`` in flight on the CPU (``requests``: how many, default the
        runtime's choice; ``threads``: the CPU threads to share), or why the runtime offers none.
        CUDA streams are ``throughput``'s, each with a runner from ``streams``."""
        return f"{self.manifest.backend} on the CPU: one request at a time (each call uses every CPU thread)"

    def streams(self, n: int) -> list[Callable[[torch.Tensor], torch.Tensor]] | str:
        """``n`` runners, one per CUDA stream and thread, for ``n`` requests in flight on the GPU,
        or why the runtime runs one at a time. Here ``run`` itself, ``n`` times: a torch module
        may run on several streams from several threads at once."""
        return [self.run] * n

    def layer_times(self, x: torch.Tensor, threads: int) -> tuple[str, dict[tuple[str, str], float]] | str:
        """Per-layer times on ``x`` (``threads``: the CPU threads to use): the profiler's name and
        each (layer name, kind)'s mean milliseconds over ``layers.CALLS`` calls after
        ``layers.WARMUP_CALLS`` of warm-up, or the sentence saying the runtime offers none."""
        device = self.manifest.device.type
        where = "" if device == "cpu" else f" on {device}"
        return f"per-layer timing is not offered by {self.manifest.backend}{where}"

    def layer_precisions(self) -> LayerPrecisions | str:
        """How many of the engine's compute layers its runtime runs in int8 and how many in float,
        and the precision conversions between them (``int8_report``), or why it cannot say."""
        return (f"the layer precisions of {self.manifest.backend} engines are not read here "
                "(only ONNX Runtime's and OpenVINO's)")

    def exposed(self, stages: list[tuple[str, str]], net: nn.Module, quantized: nn.Module | None,
                progress: Callable[[str], None] = lambda message: None,
                ) -> Callable[[torch.Tensor], dict[str, torch.Tensor]] | str:
        """A runner of the engine's graph with the outputs of ``stages`` (``compare``'s parts:
        name, module) added: a batch in, each part found in the graph and the logits
        (``graph_parts.LOGITS``) out, as float32. ``net`` is the eager float32 model the engine
        was built from and ``quantized`` its fake-quantized model for int8 engines (None
        otherwise); ``progress`` hears of the work before it starts. Or why it exposes none."""
        return f"{self.manifest.backend} engines expose no intermediate outputs: only the logits are compared"


class Backend(Protocol):
    name: str
    devices: tuple[str, ...]  # "cpu", "cuda": where its engines can run, preferred first
    formats: tuple[str, ...]  # artifact formats; the first is the default
    extra: str  # the pip extra that installs it
    settings: type[Settings]  # its BuildSpec.options as a typed record, and the flags it offers for them
    int8_placement: Int8Placement  # whose Q/DQ its int8 engines run: MODELOPT, or its own

    def available(self) -> Availability:
        """Installed, and one of its devices present?"""

    def precisions(self, device: str) -> dict[Precision, str]:
        """Precisions it can do on ``device`` of this machine, each with a note; those it
        cannot do are absent. Each is one whose ``backends`` name this backend."""

    def io_dtype(self, precision: Precision) -> torch.dtype:
        """The dtype of the artifact's graph input and output for ``precision``."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries it builds and runs with, for the manifest."""

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        """Compile the float32 eval ``model`` for ``spec`` and write the artifact's files into
        ``folder`` (empty, temporary). Returns the settings ``load`` runs the artifact with,
        recorded in the manifest as ``backend_settings``."""

    def files(self, fmt: str) -> tuple[str, ...]:
        """The files an artifact of format ``fmt`` consists of, its main file first."""

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        """The artifact in ``folder`` loaded, with the recorded ``backend_settings``."""

    def check_compatible(self, manifest: EngineManifest) -> None:
        """Raise DenseNetTRTError if this machine cannot run the artifact described by ``manifest``."""

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """How Triton serves an artifact of format ``fmt``, or the sentence saying Triton has no
        runner for it (``no_triton_runner``). Read from the manifest alone: the engine is not
        loaded, so a GPU engine can be exported on a machine that cannot run it."""
