"""Torch-TensorRT: DenseNets compiled into TensorRT engines for NVIDIA GPUs.

Supported versions
    torch-tensorrt 2.14.x only (TensorRT 11.1, torch 2.14), the release ``densenet-trt[tensorrt]``
    installs. Read from the wheels' ``dynamo/_compiler.py``:

    - 2.9 to 2.12 (TensorRT 10) take ``enabled_precisions`` and ``use_explicit_typing``; their
      FP16 is a builder flag over an FP32 model, not the typed graph this backend builds. 2.13
      is the first release on TensorRT 11, so builds for JetPack 6 (TensorRT 10) are of this line.
    - 2.13 (TensorRT 11.0) has the 2.14 compile API but requires torch < 2.14, and its
      ``convert_exported_program_to_serialized_trt_engine`` cannot name the engine's bindings,
      which the ``engine`` format relies on.

    ``available()`` refuses every other version with this reason. Versions are read from the
    package metadata: ``import torch_tensorrt`` fails on a machine without an NVIDIA driver, so
    it (and ``tensorrt``) is imported only inside ``build`` and ``load``.

Precision
    TensorRT 11 networks are strongly typed: there are no FP16/INT8 builder flags and
    Torch-TensorRT 2.14 has no ``enabled_precisions`` (it would be swallowed, giving an FP32
    engine). A precision is built by casting the model to its dtype (``.half()``, bfloat16)
    before ``torch.export`` and declaring inputs of that dtype, so every layer runs in the
    precision asked for. The runner casts the float32 input to that dtype on the GPU. FP32 runs
    in true FP32: TF32 is off unless ``allow_tf32`` is set. BF16 needs compute capability 8.0
    (Ampere) or newer.

    INT8 is explicit: the model ``build`` gets for int8 carries ModelOpt's fake-quantizers
    (``densenet-trt calibrate``). It is captured with ``torch.export(strict=False)`` under
    ModelOpt's ``export_torch_mode()``, where on the GPU each quantizer traces as Torch-TensorRT's
    ``tensorrt.quantize_op`` and converts to a TensorRT Q/DQ pair (the path of Torch-TensorRT's
    ``examples/dynamo/vgg16_ptq.py``). Layers between the Q/DQ pairs (BatchNorm, ReLU, the
    concatenations) run in float32, as in that example: mixing in fp16 would need a half model
    whose quantizers and accuracy cannot be checked without a GPU, so it is not offered.

Formats (files inside the artifact folder)
    ``exported-program`` (``model.ep``, default): ``torch_tensorrt.load(path).module()``.
    ``torchscript`` (``model.ts``): ``torch.jit.load``; C++ loads it with ``torch::jit::load``
    and ``libtorchtrt_runtime`` linked.
    ``aot-inductor`` (``model.pt2``): ``torch._inductor.aoti_load_package``; C++ with
    ``AOTIModelPackageLoader``. Building it compiles C++, so it needs a C++ compiler.
    ``engine`` (``model.engine``): a raw TensorRT plan with one input ``input`` and one output
    ``logits``, for C++ apps without libtorch (``IRuntime::deserializeCudaEngine``). Every
    operator must convert to TensorRT.

Settings (``BuildSpec.options``; defaults in ``TensorRTSettings``)
    ``workspace_size``: bytes of scratch memory TensorRT may use per layer; None: TensorRT's
    default (the GPU's memory).
    ``optimization_level``: 0-5, how long the builder searches for faster kernels; None:
    TensorRT's default (3).
    ``timing_cache_path``: file of measured kernel timings, read before and written after a
    build, so rebuilding on the same GPU is faster; None: ``timing.cache`` in the folder the
    engines are written to (``BuildSpec.cache_dir``), else Torch-TensorRT's default.
    ``min_block_size``: fewest consecutive convertible operators worth a TensorRT engine;
    None: Torch-TensorRT's default (5).
    ``require_full_compilation``: fail rather than leave operators running in PyTorch.
    ``allow_tf32``: let FP32 convolutions and matmuls round their inputs to TF32 (Ampere and
    newer): faster, about 1e-3 relative error.
    ``hardware_compatible``: build for every GPU of compute capability 8.0 or newer, not only
    this one's architecture (the build GPU must itself be 8.0+); can be slower.
    ``version_compatible``: build a version-compatible plan; can be slower. Torch-TensorRT 2.14
    sets both ``BuilderFlag.VERSION_COMPATIBLE`` and ``EXCLUDE_LEAN_RUNTIME`` for it
    (``_TRTInterpreter.py``): the plan does not carry TensorRT's lean runtime, so a newer
    TensorRT can run it only after ``IRuntime::loadRuntime()`` is given the lean runtime library
    (``libnvinfer_lean``) of the release that built it (NvInferRuntime.h). This tool's loaders
    do not do that, so it loads such an engine only with the building release, like any other;
    a C++ app that loads the lean runtime itself can go further.

Compatibility
    An engine runs only with the TensorRT release that built it (version-compatible ones too,
    here: see above) and on GPUs of the compute capability it was built on, unless built
    ``hardware_compatible``; and only on the platform (OS and CPU architecture) it was built
    on. ``check_compatible`` compares the manifest against this machine before anything loads.

Jetson
    Jetson modules are CUDA GPUs like any other (Orin is compute capability 8.7, so BF16 works;
    Xavier is 7.2, so it does not), but JetPack brings its own TensorRT and torch-tensorrt
    builds; those on TensorRT 10 are refused by the version check above. Build engines on the
    Jetson itself: no desktop GPU shares its compute capability. Where JetPack installs TensorRT
    without Python package metadata, its version is not recorded and not compared.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.metadata
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..engine.capture import (
    INPUT_NAME,
    OUTPUT_NAME,
    batch_dynamic_shapes,
    capture_batch,
    capture_exported_program,
    example_input,
)
from ..engine.spec import BuildSpec, Precision
from ._tensorrt_runtime import PlanRuntime, TorchTensorRTRuntime
from .base import MODELOPT, Availability, Runtime, TritonTarget, check_native, check_same_torch, no_triton_runner, triton_libtorch
from .settings import BOOLEAN, INTEGER, PATH, Flag, Settings, setting

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest

INSTALL_HINT = "pip install 'densenet-trt[tensorrt]'"
SUPPORTED = ((2, 14),)  # (major, minor) releases of torch-tensorrt this backend is written against
SUPPORTED_TEXT = ", ".join(f"{major}.{minor}.x" for major, minor in SUPPORTED)
UNSUPPORTED_WHY = (
    "2.12 and older (TensorRT 10, JetPack 6) set precision with enabled_precisions, "
    "and 2.13 needs torch 2.13 and cannot name a raw engine's bindings"
)
TENSORRT_PACKAGES = ("tensorrt-cu13", "tensorrt")  # the first one installed gives the TensorRT version
AMPERE = (8, 0)  # bf16 and hardware-compatible engines need this compute capability or newer

FILES = {
    "exported-program": "model.ep",
    "torchscript": "model.ts",
    "aot-inductor": "model.pt2",
    "engine": "model.engine",
}
# Our format names -> torch_tensorrt.save(output_format=...); "engine" is written as raw bytes.
SAVE_FORMATS = {
    "exported-program": "exported_program",
    "torchscript": "torchscript",
    "aot-inductor": "aot_inductor",
}
# Binding names of the raw engine, shaped like the exported program's (args, output).
BINDING_NAMES = {"arg_input_binding_names": (INPUT_NAME,), "output_binding_names": OUTPUT_NAME}
# Triton's TensorRT runner: a raw plan, as model.plan, with the plan's binding names.
TRITON_PLAN = TritonTarget(("platform", "tensorrt_plan"), {"model.engine": "model.plan"}, INPUT_NAME, OUTPUT_NAME,
                           "KIND_GPU")


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"2.14.0+cu130"`` -> ``(2, 14, 0)``."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def unsupported_reason(torch_tensorrt_version: str) -> str:
    """Why this torch-tensorrt version cannot be used ("" when it can)."""
    if release(torch_tensorrt_version)[:2] in SUPPORTED:
        return ""
    return (
        f"torch-tensorrt {torch_tensorrt_version} is installed but this backend supports "
        f"{SUPPORTED_TEXT} only ({UNSUPPORTED_WHY})"
    )


def precisions_for(compute_capability: tuple[int, int]) -> dict[Precision, str]:
    """The precisions a GPU of ``compute_capability`` builds, each with a note."""
    found = {
        Precision.FP32: "float32 weights and activations (TF32 off unless allow_tf32)",
        Precision.FP16: "float16 model and inputs (a strongly typed TensorRT network)",
    }
    if tuple(compute_capability) >= AMPERE:
        found[Precision.BF16] = "bfloat16 model and inputs (a strongly typed TensorRT network)"
    found[Precision.INT8] = "ModelOpt Q/DQ from `densenet-trt calibrate`; float32 between them"
    return found


def artifact_format(fmt: str | None) -> str:
    """``fmt``, or the default format when it is None."""
    if fmt is None:
        return next(iter(FILES))
    if fmt not in FILES:
        raise DenseNetTRTError(
            f"unknown format {fmt!r} for backend tensorrt; choose one of {', '.join(FILES)}"
        )
    return fmt


def allow_tf32() -> dataclasses.Field:
    """The ``allow_tf32`` setting both TensorRT backends take, with its flag."""
    return setting(False, BOOLEAN, flag=Flag(
        "--allow-tf32", "TensorRT: fp32 convolutions and matmuls may round to TF32 (Ampere+; faster, about 1e-3 "
                        "relative error; the gate uses TF32's tolerance)."))


@dataclasses.dataclass(frozen=True)
class BuilderSettings(Settings):
    """The settings of TensorRT's builder that both TensorRT backends take (None: TensorRT's own default)."""

    workspace_size: int | None = setting(None, INTEGER, 1, flag=Flag(
        "--workspace-gb", "TensorRT: builder workspace limit in GiB (above 0, at most 1024).", float, 0, 1024,
        low_open=True, scale=1 << 30))
    optimization_level: int | None = setting(None, INTEGER, 0, 5, flag=Flag(
        "--opt-level", "TensorRT: builder optimization level 0-5 (higher: longer build, faster engine).", int, 0, 5))
    timing_cache_path: str | None = setting(None, PATH, flag=Flag(
        "--timing-cache", "TensorRT: timing cache file, reused across builds; default OUTPUT/timing.cache.", Path))


@dataclasses.dataclass(frozen=True)
class TensorRTSettings(BuilderSettings):
    """Build settings, with their defaults (None: the library's own); see the module docstring."""

    WHO: ClassVar[str] = "TensorRT"

    min_block_size: int | None = setting(None, INTEGER, 1)
    require_full_compilation: bool = setting(False, BOOLEAN)
    hardware_compatible: bool = setting(False, BOOLEAN, flag=Flag(
        "--hardware-compatible", "TensorRT: engine runs on any Ampere or newer GPU (slower)."))
    version_compatible: bool = setting(False, BOOLEAN, flag=Flag(
        "--version-compatible", "TensorRT: a version-compatible plan (without the lean runtime: a later TensorRT "
                                "runs it only where the app loads the building release's lean runtime)."))
    allow_tf32: bool = allow_tf32()

    @classmethod
    def from_options(
        cls, options: dict[str, Any], compute_capability: tuple[int, int] | None = None
    ) -> TensorRTSettings:
        """Settings from ``BuildSpec.options``, checked; ``compute_capability`` (of the build
        GPU, when there is one) is checked against ``hardware_compatible``."""
        settings = super().from_options(options)
        if settings.hardware_compatible and compute_capability is not None and tuple(compute_capability) < AMPERE:
            raise DenseNetTRTError(
                f"hardware_compatible engines need a GPU of compute capability 8.0 (Ampere) or newer "
                f"to build on; this GPU is {_capability_text(compute_capability)}; drop hardware_compatible"
            )
        return settings


def compile_kwargs(spec: BuildSpec, settings: TensorRTSettings) -> dict[str, Any]:
    """The keyword arguments, other than the program and its inputs, given to
    ``torch_tensorrt.dynamo.compile`` (and to ``convert_exported_program_to_serialized_trt_engine``).
    Precision is not among them: it is the dtype of the model and of its inputs."""
    kwargs: dict[str, Any] = {
        "disable_tf32": not settings.allow_tf32,
        "require_full_compilation": settings.require_full_compilation,
        "hardware_compatible": settings.hardware_compatible,
        "version_compatible": settings.version_compatible,
    }
    timing_cache = settings.timing_cache_path
    if timing_cache is None and spec.cache_dir is not None:
        timing_cache = str(Path(spec.cache_dir) / "timing.cache")
    if timing_cache is not None:
        # Torch-TensorRT 2.14 calls os.makedirs(os.path.dirname(path)) after the build
        # (_TRTInterpreter.py): a bare file name gives makedirs("") -> FileNotFoundError.
        timing_cache = str(Path(timing_cache).resolve())
    library_defaults = {
        "workspace_size": settings.workspace_size,
        "optimization_level": settings.optimization_level,
        "timing_cache_path": timing_cache,
        "min_block_size": settings.min_block_size,
    }
    kwargs.update({name: value for name, value in library_defaults.items() if value is not None})
    return kwargs


def input_shapes(spec: BuildSpec) -> dict[str, Any]:
    """Keyword arguments of ``torch_tensorrt.Input``: the batch range and the input dtype."""
    image = (spec.in_channels, spec.image_size, spec.image_size)
    return {
        "min_shape": (spec.batch.min, *image),
        "opt_shape": (spec.batch.opt, *image),
        "max_shape": (spec.batch.max, *image),
        "dtype": spec.precision.dtype,
    }


def exported_program(model: nn.Module, spec: BuildSpec, device: str) -> torch.export.ExportedProgram:
    """The graph handed to Torch-TensorRT: a copy of ``model`` in the precision's dtype on
    ``device``, exported with a dynamic batch. An int8 model (ModelOpt fake-quantizers) is
    exported with ``strict=False`` under ModelOpt's ``export_torch_mode()``, as Torch-TensorRT's
    ``examples/dynamo/vgg16_ptq.py`` does."""
    dtype = spec.precision.dtype
    model = copy.deepcopy(model).eval().to(device, dtype)
    if spec.precision is not Precision.INT8:
        return capture_exported_program(model, spec.batch, spec.image_size, dtype, device)
    from modelopt.torch.quantization.utils import export_torch_mode

    example = example_input(capture_batch(spec.batch), spec.image_size, spec.in_channels, dtype=dtype).to(device)
    with torch.no_grad(), export_torch_mode():
        return torch.export.export(model, (example,), dynamic_shapes=batch_dynamic_shapes(spec.batch), strict=False)


def check_engine_compatible(
    manifest: EngineManifest, tensorrt_version: str | None, compute_capability: tuple[int, int]
) -> None:
    """Raise DenseNetTRTError unless TensorRT ``tensorrt_version`` on a GPU of
    ``compute_capability`` can run the engine ``manifest`` describes. A version not recorded
    (or not installed as a package, as on some Jetsons) is not compared. A TensorRT plan, and
    the AOTInductor format's compiled code, run only on the platform (OS and CPU architecture)
    they were built on; the AOTInductor format also only with the torch that built it."""
    check_native(manifest, "TensorRT engine")
    if manifest.format == "aot-inductor":
        check_same_torch(manifest, "TensorRT AOTInductor package")
    settings = manifest.backend_settings
    if settings.get("disable_tf32") is manifest.tf32:
        raise DenseNetTRTError(f"the manifest's tf32 ({manifest.tf32}) contradicts its backend_settings' disable_tf32; "
                               "rebuild the engine")
    built_version = manifest.versions.get("tensorrt")
    if built_version and tensorrt_version and release(tensorrt_version) != release(built_version):
        lean = (" (version-compatible plans from Torch-TensorRT exclude the lean runtime: a newer TensorRT "
                "runs them only with the building release's libnvinfer_lean loaded by IRuntime::loadRuntime)"
                if settings.get("version_compatible") is True else "")
        raise DenseNetTRTError(
            f"this engine was built with TensorRT {built_version} and runs with that release only{lean}; this "
            f"machine has TensorRT {tensorrt_version}; rebuild the engine here (or install TensorRT {built_version})"
        )
    gpu = manifest.device.gpu
    if gpu is None:
        return
    if gpu.capability == tuple(compute_capability):
        return
    hardware_compatible = settings.get("hardware_compatible") is True
    if hardware_compatible and tuple(compute_capability) >= AMPERE:
        return
    allowed = (
        "GPUs of compute capability 8.0 (Ampere) or newer"
        if hardware_compatible
        else f"GPUs of compute capability {gpu.compute_capability} only (hardware_compatible was off)"
    )
    raise DenseNetTRTError(
        f"this engine was built on {gpu.name or 'a GPU'} for {allowed}; this GPU is compute capability "
        f"{_capability_text(compute_capability)}; rebuild the engine on this GPU"
    )


def _capability_text(compute_capability: tuple[int, int]) -> str:
    return ".".join(map(str, compute_capability))


@functools.lru_cache(maxsize=None)
def import_failure(module: str) -> str:
    """Why ``import module`` fails ("" when it works), tried in a subprocess: where TensorRT's
    libraries are missing or do not match, importing torch_tensorrt prints pages and may abort
    the process. The last line of its error output is the reason."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return ""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class TensorRTBackend:
    """Torch-TensorRT on an NVIDIA GPU; see the module docstring."""

    name = "tensorrt"
    devices = ("cuda",)
    formats = tuple(FILES)
    extra = "tensorrt"
    settings = TensorRTSettings
    int8_placement = MODELOPT

    def available(self) -> Availability:
        version = _package_version("torch-tensorrt")
        if version is None:
            return Availability(False, "torch-tensorrt is not installed", INSTALL_HINT)
        reason = unsupported_reason(version)
        if reason:
            return Availability(False, reason, INSTALL_HINT)
        if not torch.cuda.is_available():
            return Availability(
                False, "no NVIDIA GPU with CUDA is visible (torch.cuda.is_available() is False)",
                "run on a machine with an NVIDIA GPU and driver, or use a CPU backend",
            )
        failure = import_failure("torch_tensorrt")
        if failure:
            return Availability(False, f"import torch_tensorrt fails: {failure}", INSTALL_HINT)
        return Availability(True)

    def precisions(self, device: str = "cuda") -> dict[Precision, str]:
        """What this GPU builds; empty where the backend is not available (nothing builds)."""
        if device != "cuda" or not self.available().ok:
            return {}
        return precisions_for(torch.cuda.get_device_capability())

    def io_dtype(self, precision: Precision) -> torch.dtype:
        return precision.dtype  # the model and its inputs are cast; a raw plan's bindings too

    def files(self, fmt: str) -> tuple[str, ...]:
        return (FILES[artifact_format(fmt)],)

    def versions(self) -> dict[str, str]:
        found = {"torch-tensorrt": _package_version("torch-tensorrt")}
        found["tensorrt"] = next((v for v in map(_package_version, TENSORRT_PACKAGES) if v), None)
        return {name: version for name, version in found.items() if version is not None}

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        torch_tensorrt = self._import()
        fmt = artifact_format(spec.format)
        capability = torch.cuda.get_device_capability()
        settings = TensorRTSettings.from_options(spec.options, capability)
        dtype = spec.precision.dtype
        if spec.precision not in precisions_for(capability):
            raise DenseNetTRTError(
                f"precision {spec.precision} needs compute capability 8.0 (Ampere) or newer; "
                f"{torch.cuda.get_device_name()} is {_capability_text(capability)}; "
                f"choose one of {', '.join(precisions_for(capability))}"
            )
        kwargs = compile_kwargs(spec, settings)
        program = exported_program(model, spec, "cuda")
        example = example_input(capture_batch(spec.batch), spec.image_size, spec.in_channels, dtype=dtype).cuda()
        dynamic_shapes = batch_dynamic_shapes(spec.batch)
        with torch.no_grad():
            inputs = [torch_tensorrt.Input(**input_shapes(spec))]
            path = folder / FILES[fmt]
            if fmt == "engine":
                plan = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
                    program, arg_inputs=inputs, **BINDING_NAMES, **kwargs
                )
                path.write_bytes(plan)
            else:
                compiled = torch_tensorrt.dynamo.compile(program, arg_inputs=inputs, **kwargs)
                torch_tensorrt.save(
                    compiled, str(path), output_format=SAVE_FORMATS[fmt],
                    arg_inputs=[example], dynamic_shapes=dynamic_shapes,
                )
        return {"format": fmt, **kwargs}

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        self.check_compatible(manifest)
        torch_tensorrt = self._import()
        fmt = artifact_format(manifest.format)
        dtype = manifest.precision.dtype
        path = Path(folder) / FILES[fmt]
        if not path.is_file():
            raise DenseNetTRTError(f"{path} is missing: the {fmt} artifact is incomplete; rebuild it")
        if fmt == "exported-program":
            module = torch_tensorrt.load(str(path)).module()
        elif fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cuda")
        elif fmt == "aot-inductor":
            from torch._inductor import aoti_load_package

            module = aoti_load_package(str(path))
        else:
            hardware_compatible = manifest.backend_settings.get("hardware_compatible") is True
            module = torch_tensorrt.runtime.TorchTensorRTModule(
                path.read_bytes(),
                input_binding_names=list(BINDING_NAMES["arg_input_binding_names"]),
                output_binding_names=[BINDING_NAMES["output_binding_names"]],
                name="densenet",
                settings=torch_tensorrt.dynamo.CompilationSettings(hardware_compatible=hardware_compatible),
            )

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x.to("cuda", dtype).contiguous())

        return (PlanRuntime if fmt == "engine" else TorchTensorRTRuntime)(folder, manifest, run)

    def check_compatible(self, manifest: EngineManifest) -> None:
        availability = self.available()
        if not availability.ok:
            raise DenseNetTRTError(availability.message(self.name))
        check_engine_compatible(manifest, self.versions().get("tensorrt"), torch.cuda.get_device_capability())

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """A raw plan runs on Triton's TensorRT runner, TorchScript on its PyTorch runner (on the GPU)."""
        if fmt == "engine":
            return TRITON_PLAN
        return triton_libtorch(FILES[fmt], "KIND_GPU") if fmt == "torchscript" else no_triton_runner(self.name, fmt)

    def _import(self) -> ModuleType:
        """``torch_tensorrt``, imported now; a DenseNetTRTError where it cannot run."""
        availability = self.available()
        if not availability.ok:
            raise DenseNetTRTError(availability.message(self.name))
        import torch_tensorrt

        return torch_tensorrt
