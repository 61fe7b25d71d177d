"""What an engine is built for, validated once, here: the precision table, the batch range,
the image size and the BuildSpec."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

from ..errors import DenseNetTRTError
from ..machine import check_threads
from .verify import Tolerance

if TYPE_CHECKING:
    import torch

    from ..model.registry import ModelInfo


class Precision(str, enum.Enum):
    """An engine precision and everything that follows from it: the one table.

    A member is its name (``Precision.FP16 == "fp16"``), and carries:

    - ``dtype``: the torch dtype the model and its inputs are cast to (int8 models are float32
      with ModelOpt's Q/DQ pairs inside);
    - ``tolerance``: the accuracy gate against eager float32 PyTorch (int8: against ModelOpt's
      fake-quantized model; against float32 an int8 engine meets its calibration's tolerance);
    - ``onnx``, ``triton``: the names of ``dtype`` in ONNX and in Triton's model configuration;
    - ``openvino``: OpenVINO's ``INFERENCE_PRECISION_HINT``, and ``cpu_capability``: the CPU's
      ``OPTIMIZATION_CAPABILITIES`` entry it needs (None: every CPU);
    - ``backends``: the backends that can build it on some device, fastest first on the CPU
      (the order ``--backend auto`` tries them in; docs/benchmarks.md has the measurements).

    Tolerances: fp32 engines differ from eager only by the order of floating-point operations.
    fp16 (10-bit mantissa) and bf16 (7-bit) round every activation; their bounds hold for the
    presets with random and with trained weights, with room for deeper models. int8 engines
    against the fake-quantized model: the same scales, but INT8 kernels round and accumulate
    differently, and a value that lands on the other side of a rounding step moves by a whole
    step in every later layer. ``gate_tolerance`` gives fp32 engines built with TF32 allowed
    their own bound (``TF32_TOLERANCE``).
    """

    FP32 = ("fp32", "float32", Tolerance(1e-4, 1e-4, 0.99999, 1.0), "FLOAT", "TYPE_FP32", "f32", None,
            ("tensorrt", "tensorrt-onnx", "onnxruntime", "openvino", "inductor", "torchscript"))
    FP16 = ("fp16", "float16", Tolerance(1e-3, 2e-2, 0.999, 1.0), "FLOAT16", "TYPE_FP16", "f16", "FP16",
            ("tensorrt", "tensorrt-onnx", "openvino", "onnxruntime", "inductor", "torchscript"))
    BF16 = ("bf16", "bfloat16", Tolerance(1e-2, 8e-2, 0.99, 1.0), "BFLOAT16", "TYPE_BF16", "bf16", "BF16",
            ("tensorrt", "openvino", "inductor", "torchscript"))
    INT8 = ("int8", "float32", Tolerance(2e-2, 5e-2, 0.995, 1.0), "FLOAT", "TYPE_FP32", "f32", "INT8",
            ("tensorrt", "tensorrt-onnx", "openvino", "onnxruntime"))

    def __new__(cls, name: str, dtype_name: str, tolerance: Tolerance, onnx: str, triton: str,
                openvino: str, cpu_capability: str | None, backends: tuple[str, ...]) -> Precision:
        member = str.__new__(cls, name)
        member._value_ = name
        member.dtype_name = dtype_name
        member.tolerance = tolerance
        member.onnx = onnx
        member.triton = triton
        member.openvino = openvino
        member.cpu_capability = cpu_capability
        member.backends = backends
        return member

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def gate_tolerance(self, tf32: bool = False) -> Tolerance:
        """The bound an engine of this precision meets against eager float32: ``tolerance``, or
        ``TF32_TOLERANCE`` for fp32 engines whose convolutions and matmuls may use TF32 (the
        other precisions do not run their layers in float32, or, for int8, meet their
        calibration's far wider bound)."""
        return TF32_TOLERANCE if tf32 and self is Precision.FP32 else self.tolerance

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype called ``dtype_name`` (as the manifest writes it: ``float32``,
        ``float16``, ``bfloat16``); torch is imported here, not with the table."""
        import torch

        return getattr(torch, self.dtype_name)

    @classmethod
    def parse(cls, name: str | Precision) -> Precision:
        """The precision called ``name``; an unknown name raises naming the choices."""
        try:
            return cls(name)
        except ValueError:
            raise DenseNetTRTError(
                f"unknown precision {name!r}; choose one of {', '.join(p.value for p in cls)}"
            ) from None

    @classmethod
    def of_dtype(cls, dtype_name: str) -> Precision:
        """The float precision whose dtype is called ``dtype_name`` (``float16`` -> FP16)."""
        return next(p for p in (cls.FP32, cls.FP16, cls.BF16) if p.dtype_name == dtype_name)


# TF32 (Ampere and newer) rounds the float32 inputs of convolutions and matmuls to 10 mantissa
# bits and accumulates in float32. Emulated on the CPU (every Conv2d and Linear input and weight
# rounded so; random weights, 4 inputs, 2 seeds; tests/test_tf32.py repeats it on one preset):
# round-to-nearest gave at most 8e-4 of the largest logit and truncation, the worst a kernel may
# do, 1.12e-2 (densenet264; 9.9e-3 densenet121), cosine >= 0.999997; fp32's 1e-4 never held.
TF32_TOLERANCE = Tolerance(1e-3, 2e-2, 0.9999, 1.0)

PRECISIONS = tuple(p.value for p in Precision)

# Bounds of the numbers a user gives, checked where they are parsed (the command line's types
# in cli/options.py read these) and again by the library.
MAX_SEED = 2**32 - 1  # what numpy's and torch's generators take


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` if it is an integer from 0 to ``MAX_SEED``; else DenseNetTRTError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise DenseNetTRTError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed
# Every backend name, in the order the table lists them; and the devices an engine runs on.
BACKEND_NAMES = tuple(dict.fromkeys(name for p in Precision for name in p.backends))
DEVICES = ("cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class BatchRange:
    """Batch sizes an engine accepts: ``min <= opt <= max``; ``opt`` is the size tuned for."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        for value in (self.min, self.opt, self.max):
            if isinstance(value, bool) or not isinstance(value, int):
                raise DenseNetTRTError(f"batch sizes must be integers, got {value!r}")
        if not 1 <= self.min <= self.opt <= self.max:
            raise DenseNetTRTError(
                f"batch range {self} must satisfy 1 <= min <= opt <= max (e.g. 1:8:32)"
            )

    @classmethod
    def parse(cls, text: str | int | BatchRange) -> BatchRange:
        """``"8"`` (fixed batch 8) or ``"min:opt:max"`` such as ``"1:8:32"``."""
        if isinstance(text, BatchRange):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text, text, text)
        parts = str(text).split(":")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) == 1:
            values *= 3
        if len(values) != 3:
            raise DenseNetTRTError(
                f"batch {text!r} is not N or MIN:OPT:MAX with integers (e.g. 1 or 1:8:32)"
            )
        return cls(*values)

    @property
    def dynamic(self) -> bool:
        return self.min != self.max

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> BatchRange:
        return cls(record["min"], record["opt"], record["max"])

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def check(self, n: int, what: str = "batch") -> int:
        """``n`` if this range takes a batch of ``n``; else the one error for it."""
        if isinstance(n, bool) or not isinstance(n, int) or not self.min <= n <= self.max:
            raise DenseNetTRTError(f"{what} {n!r} is outside this engine's batch range {self}")
        return n

    def sizes(self) -> list[int]:
        """The distinct sizes worth checking: min, opt and max."""
        return sorted({self.min, self.opt, self.max})

    def __str__(self) -> str:
        """The one way a range is printed: ``1:8:32``, or ``4`` for a fixed size."""
        return f"{self.min}:{self.opt}:{self.max}" if self.dynamic else str(self.min)


def check_image_size(info: ModelInfo, image_size: int | None, num_blocks: int | None = None) -> int:
    """The input side for preset ``info`` (with ``num_blocks`` dense blocks where overridden):
    ``image_size``, or the preset's default."""
    stem = info.config["stem"]
    blocks = num_blocks if num_blocks is not None else len(info.config["block_config"])
    if image_size is None:
        image_size = info.image_size
    from ..model.network import min_image_size

    smallest = min_image_size(stem, blocks)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < smallest:
        raise DenseNetTRTError(
            f"image size {image_size!r} is too small for {info.name}: its {stem} stem and "
            f"{blocks} blocks need at least {smallest} pixels (default {info.image_size})"
        )
    return image_size


@dataclasses.dataclass(frozen=True)
class Int8Ranges:
    """What a backend that places its own int8 Q/DQ takes from the calibration: activation
    ranges (tensor name -> [low, high]), the layers kept in float, and the calibration's path."""

    ranges: dict
    float_layers: list
    calibration: str


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """What an engine is built for. ``options`` holds backend-specific settings (TensorRT's
    workspace size, optimization level, ...), checked by the backend that reads them."""

    precision: Precision
    batch: BatchRange
    image_size: int
    in_channels: int = 3
    device: str = "cpu"  # "cpu" or "cuda"
    format: str | None = None  # None: the backend's default format
    threads: int | None = None  # CPU threads for building and running; None: the library's default
    cache_dir: str | None = None  # where build caches live (TensorRT's timing cache), beside the engines
    options: dict = dataclasses.field(default_factory=dict)
    int8_ranges: Int8Ranges | None = None  # int8 with a backend's own placement (Backend.int8_placement)

    @property
    def tf32(self) -> bool:
        """Whether float32 layers may round to TF32: the TensorRT backends' ``allow_tf32``."""
        return self.options.get("allow_tf32") is True

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        if self.threads is not None:
            check_threads(self.threads)
