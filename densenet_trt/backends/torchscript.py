"""TorchScript: the model scripted and frozen; on the CPU in float32, ``optimize_for_inference``
runs when the engine is loaded (its oneDNN-prepacked weights cannot be saved).

A `.ts` file that libtorch loads in C++ with ``torch::jit::load``. TorchScript is deprecated in
PyTorch 2.x in favour of torch.export, but still works and is what many C++ apps embed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..engine.artifact import save_via_memory
from ..engine.capture import capture_torchscript
from ..errors import DenseNetTRTError
from ..engine.spec import BuildSpec, Precision
from ._torch import TorchBackendBase, apply_float32, apply_threads, torch_device
from .base import Runtime, TritonTarget, triton_libtorch

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest

OPTIMIZE = "optimize_for_inference_at_load"


class TorchScriptBackend(TorchBackendBase):
    name = "torchscript"
    formats = ("torchscript",)
    file = "model.ts"

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        device = torch_device(spec.device)
        model = model.to(device, spec.precision.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            save_via_memory(torch.jit.save, capture_torchscript(model), folder / self.file)
        # optimize_for_inference folds BatchNorm into the convolutions and, on the CPU, moves
        # them to oneDNN's layout, which cannot be saved; it targets float32, so bf16 engines
        # run the frozen module as it is.
        return {OPTIMIZE: spec.device == "cpu" and spec.precision is Precision.FP32}

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        device = torch_device(manifest.device.type)
        dtype = manifest.precision.dtype
        optimize = manifest.backend_settings.get(OPTIMIZE)
        if not isinstance(optimize, bool):
            raise DenseNetTRTError(f"the manifest's backend_settings.{OPTIMIZE} must be true or false; rebuild the engine")
        apply_threads(manifest)
        apply_float32(manifest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(folder / self.file), map_location=device)
            if optimize:
                module = torch.jit.optimize_for_inference(module)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x.to(device, dtype))

        return Runtime(folder, manifest, run)

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """The `.ts` file runs on Triton's PyTorch runner, on the CPU (a cuda engine's kind is Triton's GPU)."""
        return triton_libtorch(self.file, "KIND_CPU")
