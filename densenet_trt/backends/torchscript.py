"""TorchScript: the model scripted and frozen; on the CPU in float32, ``optimize_for_inference``
runs when the engine is loaded (its oneDNN-prepacked weights cannot be saved).

A `.ts` file that libtorch loads in C++ with ``torch::jit::load``. TorchScript is deprecated in
PyTorch 2.x in favour of torch.export, but still works and is what many C++ apps embed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..capture import capture_torchscript
from ..spec import BuildSpec
from ._torch import TorchBackendBase, apply_threads, torch_device
from .base import DTYPES

FILE = "model.ts"


def _optimize(device: str, precision: str) -> bool:
    """optimize_for_inference folds BatchNorm into the convolutions and, on the CPU, moves them
    to oneDNN's layout; it targets float32, so bf16 engines run the frozen module as it is."""
    return device == "cpu" and precision == "fp32"


class TorchScriptBackend(TorchBackendBase):
    name = "torchscript"
    formats = ("torchscript",)

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        device = torch_device(spec.device)
        model = model.to(device, DTYPES[spec.precision])
        torch.jit.save(capture_torchscript(model), str(folder / FILE))
        return {"optimize_for_inference_at_load": _optimize(spec.device, spec.precision)}

    def load(self, folder: Path, manifest: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
        device = torch_device(manifest["device"]["type"])
        dtype = DTYPES[manifest["precision"]]
        apply_threads(manifest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(folder / FILE), map_location=device)
            if _optimize(manifest["device"]["type"], manifest["precision"]):
                module = torch.jit.optimize_for_inference(module)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x.to(device, dtype))

        return run
