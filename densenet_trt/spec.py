"""Input specifications, validated once, here: the batch range and the image size."""

from __future__ import annotations

import dataclasses

from .errors import DenseNetTRTError
from .models import min_image_size
from .registry import ModelInfo


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

    def sizes(self) -> list[int]:
        """The distinct sizes worth checking: min, opt and max."""
        return sorted({self.min, self.opt, self.max})

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}" if self.dynamic else str(self.min)


def check_image_size(info: ModelInfo, image_size: int | None, num_blocks: int | None = None) -> int:
    """The input side for preset ``info`` (with ``num_blocks`` dense blocks where overridden):
    ``image_size``, or the preset's default."""
    stem = info.config["stem"]
    blocks = num_blocks if num_blocks is not None else len(info.config["block_config"])
    if image_size is None:
        image_size = info.image_size
    smallest = min_image_size(stem, blocks)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < smallest:
        raise DenseNetTRTError(
            f"image size {image_size!r} is too small for {info.name}: its {stem} stem and "
            f"{blocks} blocks need at least {smallest} pixels (default {info.image_size})"
        )
    return image_size


PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise DenseNetTRTError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """What an engine is built for. ``options`` holds backend-specific settings (TensorRT's
    workspace size, optimization level, ...), checked by the backend that reads them."""

    precision: str
    batch: BatchRange
    image_size: int
    in_channels: int = 3
    device: str = "cpu"  # "cpu" or "cuda"
    format: str | None = None  # None: the backend's default format
    threads: int | None = None  # CPU threads for building and running; None: the library's default
    cache_dir: str | None = None  # where build caches live (TensorRT's timing cache), beside the engines
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise DenseNetTRTError(f"threads must be a positive integer, got {self.threads!r}")
