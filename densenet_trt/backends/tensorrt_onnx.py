"""TensorRT's own Python API: the tool's ONNX capture parsed and built into a raw TensorRT plan,
the path Jetson boards and trtexec users take, for TensorRT 10.x and 11.x alike.

Supported versions
    TensorRT 10.x and 11.x, told apart by ``tensorrt.__version__``'s major number (JetPack 6
    has TensorRT 10; TensorRT 11 reaches Jetson with JetPack 7.2.2). No torch-tensorrt is
    needed: the ``tensorrt`` module, onnx and onnxscript (for the capture) and a CUDA torch. The
    API used (Builder, OnnxParser, BuilderConfig, optimization profiles, timing caches, DLA,
    Runtime, ``execute_async_v3``) was read from TensorRT's sources (release/10.x and 11.1
    Python bindings); it has not run here (no GPU was lent).

Precision (``recipe``)
    fp32: the float32 ONNX; TF32, which TensorRT enables by default, is cleared unless
    ``allow_tf32`` (then the gate uses ``spec.TF32_TOLERANCE``).
    fp16: TensorRT 10: the float32 ONNX with ``BuilderFlag.FP16`` (deprecated from 10.12, removed
    in 11), the network's input and output set to float16; TensorRT 11 (every network strongly
    typed, ``STRONGLY_TYPED`` deprecated and ``EXPLICIT_BATCH`` gone): the float16 ONNX capture
    (float16 weights, input and output). Either way the plan's bindings are float16, as the
    manifest says. int8: the calibrate stage's Q/DQ ONNX (``capture.capture_qdq_onnx``) with
    float32 between the Q/DQ pairs; TensorRT 10 also needs ``BuilderFlag.INT8`` (what DLA
    takes), TensorRT 11 reads the precision from the Q/DQ nodes. bf16 is not offered.

DLA (``dla_core``, ``gpu_fallback``)
    Orin's Deep Learning Accelerators run fp16 and int8 engines only, of one fixed batch (DLA
    takes only profiles with min = opt = max: a batch range is refused before any work,
    ``_trt_api.check_dla_batch``). ``dla_core=N`` makes DLA core N the default device; with
    ``gpu_fallback`` (default) the layers DLA cannot run go to the GPU; without it a layer DLA
    cannot run fails the build. The manifest records where the builder put the network, as its
    log says (``dla_subgraphs``, ``gpu_layers``). A board without DLA (Thor, desktop GPUs)
    refuses ``dla_core``.

Settings (``BuildSpec.options``)
    ``workspace_size`` (bytes), ``optimization_level`` (0-5), ``timing_cache_path`` (default
    ``timing-tensorrtMAJOR.cache`` beside the engines: one per TensorRT major, whose caches do
    not mix), ``allow_tf32``, ``dla_core``, ``gpu_fallback``.

Compatibility
    A plan runs only with the TensorRT release that built it, on the compute capability and
    platform it was built on (and, for DLA, on a board with that core). ``examples/cpp``'s
    ``infer_tensorrt`` loads it: one input ``input``, one output ``logits``, float32 or float16.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..engine.capture import capture_onnx, capture_qdq_onnx
from ..errors import DenseNetTRTError
from ..engine.spec import BuildSpec, Precision
from ._tensorrt_runtime import PlanRunnerRuntime
from ._trt_api import PlanRunner, build_plan
from .base import MODELOPT, Availability, Runtime, TritonTarget, check_native, check_same_gpu, no_triton_runner
from .settings import BOOLEAN, INTEGER, Flag, setting
from .tensorrt import TRITON_PLAN, BuilderSettings, allow_tf32, release

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest

NAME = "tensorrt-onnx"
FILE = "model.engine"
FORMAT = "engine"
SUPPORTED_MAJORS = (10, 11)
INSTALL_HINT = ("install TensorRT 10 or 11 with its Python bindings (JetPack ships them for the system "
                "Python; elsewhere pip install tensorrt) and pip install 'densenet-trt[onnx]'")


def unsupported_reason(version: str) -> str:
    """Why TensorRT ``version`` cannot build here ("" when it can)."""
    major = release(version)[:1]
    if major and major[0] in SUPPORTED_MAJORS:
        return ""
    return (f"TensorRT {version} is installed but backend {NAME} supports TensorRT "
            f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)} only")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a precision is built with one TensorRT major: what ``build`` hands the API."""

    strongly_typed: bool  # precision from the tensors' types (TensorRT 11: always, no flag)
    onnx_dtype: torch.dtype  # dtype of the float capture (int8: the Q/DQ capture, float32)
    builder_flags: tuple[str, ...]  # BuilderFlag members set
    cleared_flags: tuple[str, ...]  # BuilderFlag members cleared (TF32 is on by default)
    half_io: bool  # TensorRT 10 fp16: the network's input and output set to float16

    def record(self) -> dict[str, Any]:
        return {"strongly_typed": self.strongly_typed, "builder_flags": list(self.builder_flags),
                "cleared_flags": list(self.cleared_flags)}


def recipe(major: int, precision: Precision, allow_tf32: bool = False, dla: bool = False,
           gpu_fallback: bool = True) -> Recipe:
    """The network and builder settings for ``precision`` with TensorRT ``major`` (see the
    module docstring); refuses what that release cannot build."""
    if major not in SUPPORTED_MAJORS:
        raise DenseNetTRTError(unsupported_reason(str(major)))
    if NAME not in precision.backends:
        raise DenseNetTRTError(f"backend {NAME} does not build {precision}")
    if dla and precision is Precision.FP32:
        raise DenseNetTRTError("DLA runs fp16 and int8 engines only; build fp32 without dla_core, "
                               "or choose precision=fp16 or int8")
    typed = major >= 11
    flags: list[str] = []
    if not typed and precision is Precision.FP16:
        flags.append("FP16")
    if not typed and precision is Precision.INT8:
        flags.append("INT8")
    if dla and gpu_fallback:
        flags.append("GPU_FALLBACK")
    onnx_dtype = precision.dtype if typed and precision is Precision.FP16 else torch.float32
    return Recipe(typed, onnx_dtype, tuple(flags), () if allow_tf32 else ("TF32",),
                  half_io=not typed and precision is Precision.FP16)


@dataclasses.dataclass(frozen=True)
class OnnxTensorRTSettings(BuilderSettings):
    """Build settings (None: TensorRT's own default); see the module docstring."""

    WHO: ClassVar[str] = NAME

    allow_tf32: bool = allow_tf32()
    dla_core: int | None = setting(None, INTEGER, 0, flag=Flag(
        "--dla-core", "tensorrt-onnx: build fp16/int8 for this DLA core (Jetson Orin).", int, 0))
    gpu_fallback: bool = setting(True, BOOLEAN, flag=Flag(
        "--no-gpu-fallback", "tensorrt-onnx with --dla-core: fail rather than run layers DLA cannot on the GPU.",
        sets=False))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gpu_fallback and self.dla_core is None:
            raise DenseNetTRTError("gpu_fallback=False applies to DLA engines only; give dla_core=N too")


def timing_cache_file(spec: BuildSpec, settings: OnnxTensorRTSettings, major: int) -> Path | None:
    """The timing cache read before and written after the build, resolved; None: none."""
    if settings.timing_cache_path is not None:
        return Path(settings.timing_cache_path).resolve()
    if spec.cache_dir is None:
        return None
    return (Path(spec.cache_dir) / f"timing-tensorrt{major}.cache").resolve()


@functools.lru_cache(maxsize=None)
def probe(module: str = "tensorrt") -> tuple[str | None, str]:
    """``(module.__version__, "")`` where ``import module`` works, else ``(None, why)``, tried
    in a subprocess (a TensorRT whose libraries are missing can abort the process)."""
    code = f"import {module}; print({module}.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip().splitlines()[-1], ""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return None, lines[-1] if lines else f"exit status {result.returncode}"


def availability(version: str | None, failure: str, cuda: bool, missing: list[str]) -> Availability:
    """Whether the backend runs, from what was found: the ``tensorrt`` version (or the import's
    ``failure``; neither: not installed), whether CUDA is visible, and the capture's ``missing`` modules."""
    if missing:
        return Availability(False, f"{', '.join(missing)} not installed (the ONNX capture needs them)", INSTALL_HINT)
    if version is None:
        reason = f"import tensorrt fails: {failure}" if failure else "TensorRT's Python API (tensorrt) is not installed"
        return Availability(False, reason, INSTALL_HINT)
    reason = unsupported_reason(version)
    if reason:
        return Availability(False, reason, INSTALL_HINT)
    if not cuda:
        return Availability(False, "no NVIDIA GPU with CUDA is visible (torch.cuda.is_available() is False)",
                            "run on a machine with an NVIDIA GPU or a Jetson, or use a CPU backend")
    return Availability(True)


def recorded_dla(manifest: EngineManifest) -> int | None:
    """The DLA core the manifest's settings record (None: a GPU engine), checked."""
    settings = manifest.backend_settings
    core = settings.get("dla_core")
    if "dla_core" not in settings or (core is not None and (isinstance(core, bool) or not isinstance(core, int)
                                                             or core < 0)):
        raise DenseNetTRTError(f"the manifest's backend_settings dla_core ({core!r}) is not a {NAME} engine's; "
                               "rebuild the engine")
    return core


class OnnxTensorRTBackend:
    """TensorRT's ONNX parser and builder on an NVIDIA GPU or Jetson; see the module docstring."""

    name = NAME
    devices = ("cuda",)
    formats = (FORMAT,)
    extra = "onnx"
    settings = OnnxTensorRTSettings
    int8_placement = MODELOPT

    def available(self) -> Availability:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if importlib.util.find_spec("tensorrt") is None:
            version, failure = None, ""
        else:
            version, failure = probe("tensorrt")
        return availability(version, failure, torch.cuda.is_available(), missing)

    def precisions(self, device: str = "cuda") -> dict[Precision, str]:
        """What this machine's TensorRT builds; empty where the backend is not available."""
        if device != "cuda" or not self.available().ok:
            return {}
        typed = release(probe("tensorrt")[0])[0] >= 11
        return {
            Precision.FP32: "float32 (TF32 off unless allow_tf32)",
            Precision.FP16: "float16 ONNX, strongly typed" if typed else "FP16 builder flag, float16 bindings",
            Precision.INT8: "ModelOpt Q/DQ ONNX from `densenet-trt calibrate`; float32 between the pairs",
        }

    def io_dtype(self, precision: Precision) -> torch.dtype:
        return precision.dtype  # float16 bindings for fp16 on both majors (see ``recipe``)

    def files(self, fmt: str) -> tuple[str, ...]:
        return (FILE,)

    def versions(self) -> dict[str, str]:
        version = probe("tensorrt")[0]
        return {"onnx": importlib.metadata.version("onnx"), **({"tensorrt": version} if version else {})}

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        trt = self._import()
        major = release(trt.__version__)[0]
        settings = OnnxTensorRTSettings.from_options(spec.options)
        plan = recipe(major, spec.precision, settings.allow_tf32, settings.dla_core is not None,
                      settings.gpu_fallback)
        if spec.precision is Precision.INT8:
            proto = capture_qdq_onnx(model, spec.batch, spec.image_size)
        else:
            proto = capture_onnx(model.to(dtype=plan.onnx_dtype), spec.batch, spec.image_size, dtype=plan.onnx_dtype)
        cache = timing_cache_file(spec, settings, major)
        engine, placement = build_plan(trt, proto.SerializeToString(), spec, settings, plan, cache)
        (folder / FILE).write_bytes(engine)
        return {"format": FORMAT, "tensorrt_major": major, **plan.record(),
                **dataclasses.asdict(dataclasses.replace(settings, timing_cache_path=cache and str(cache))),
                **placement}

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        self.check_compatible(manifest)
        trt = self._import()
        path = Path(folder) / FILE
        return PlanRunnerRuntime(folder, manifest, PlanRunner(trt, path.read_bytes(), str(path), recorded_dla(manifest),
                                                              manifest.input.dtype, manifest.output.dtype))

    def check_compatible(self, manifest: EngineManifest) -> None:
        state = self.available()
        if not state.ok:
            raise DenseNetTRTError(state.message(self.name))
        check_native(manifest, "TensorRT plan")
        built, here = manifest.versions.get("tensorrt"), probe("tensorrt")[0]
        if built is None or release(built) != release(here):
            raise DenseNetTRTError(f"this plan was built with TensorRT {built} and runs with that release only; this "
                                   f"machine has TensorRT {here}: rebuild the engine here")
        check_same_gpu(manifest, torch.cuda.get_device_capability(), "TensorRT plan")
        recorded_dla(manifest)
        if manifest.backend_settings.get("allow_tf32") is not manifest.tf32:
            raise DenseNetTRTError(f"the manifest's tf32 ({manifest.tf32}) is not its backend_settings' allow_tf32 "
                                   f"({manifest.backend_settings.get('allow_tf32')!r}); rebuild the engine")

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """The plan runs on Triton's TensorRT runner."""
        return TRITON_PLAN if fmt == FORMAT else no_triton_runner(self.name, fmt)

    def _import(self):
        """``tensorrt``, imported now; a DenseNetTRTError where it cannot run."""
        state = self.available()
        if not state.ok:
            raise DenseNetTRTError(state.message(self.name))
        import tensorrt

        return tensorrt
