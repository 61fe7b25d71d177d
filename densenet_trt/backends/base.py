"""The Backend protocol, and the Engine every backend's artifact loads as."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..spec import BuildSpec

# The dtype of the model and its inputs per precision; int8 models are float32 with Q/DQ inside.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}


@dataclasses.dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; if not, why and what fixes it (one line each)."""

    ok: bool
    reason: str = ""
    hint: str = ""

    def message(self, backend: str) -> str:
        return f"backend {backend} is not available: {self.reason}" + (f"; {self.hint}" if self.hint else "")


class Backend(Protocol):
    name: str
    devices: tuple[str, ...]  # "cpu", "cuda": where its engines can run, preferred first
    formats: tuple[str, ...]  # artifact formats; the first is the default
    extra: str  # the pip extra that installs it
    option_names: tuple[str, ...]  # the BuildSpec.options it reads

    def available(self) -> Availability:
        """Installed, and one of its devices present?"""

    def precisions(self, device: str) -> dict[str, str]:
        """Precisions it can do on ``device`` of this machine, each with a note; those it
        cannot do are absent."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries it builds and runs with, for the manifest."""

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        """Compile the float32 eval ``model`` for ``spec`` and write the artifact's files into
        ``folder`` (empty, temporary). Returns backend settings to record in the manifest."""

    def load(self, folder: Path, manifest: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A runner for the artifact in ``folder``: a float32 (N, C, H, W) tensor in (on the
        CPU, or already on the backend's device), logits out (on any device, any float dtype)."""

    def check_compatible(self, manifest: dict[str, Any]) -> None:
        """Raise DenseNetTRTError if this machine cannot run the artifact described by ``manifest``."""


class Engine:
    """A built engine: call it on a float32 ``torch.Tensor`` or ``numpy`` array of shape
    (N, C, H, W), N within the built batch range, and get float32 logits (N, classes) on the
    CPU; the same for every backend."""

    def __init__(self, path: Path, manifest: dict[str, Any], runner: Callable[[torch.Tensor], torch.Tensor]):
        self.path = path
        self.manifest = manifest
        self._runner = runner
        batch = manifest["batch"]
        self.batch_min, self.batch_opt, self.batch_max = batch["min"], batch["opt"], batch["max"]
        self.image_size = manifest["image_size"]
        self.in_channels = manifest["in_channels"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

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
        if x.shape[1] != self.in_channels or x.shape[2] != self.image_size or x.shape[3] != self.image_size:
            raise DenseNetTRTError(f"input has shape {tuple(x.shape)}; this engine takes {expected}")
        n = x.shape[0]
        if not self.batch_min <= n <= self.batch_max:
            raise DenseNetTRTError(
                f"batch {n} is outside this engine's range {self.batch_min}..{self.batch_max}; "
                "split the input or rebuild with --batch MIN:OPT:MAX"
            )
        return x.contiguous()

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        out = self.run(self.check_input(x))
        return out.detach().to("cpu", torch.float32)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The backend's runner without the input checks or the copy of the output to the CPU
        (what ``profile`` times): logits on the engine's device, in its dtype."""
        return self._runner(x)

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Engine({m['model']['name']}, backend={m['backend']}, format={m['format']}, "
            f"precision={m['precision']}, batch={self.batch_min}:{self.batch_opt}:{self.batch_max}, "
            f"image_size={self.image_size})"
        )
