"""What the PyTorch-based backends (torchscript, inductor) share: devices and precisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import DenseNetTRTError
from ..engine.spec import Precision
from .base import MODELOPT, Availability
from .settings import Settings

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest


def cuda_available() -> bool:
    return torch.cuda.is_available()


def torch_devices() -> tuple[str, ...]:
    return ("cuda", "cpu") if cuda_available() else ("cpu",)


def torch_precisions(device: str) -> dict[Precision, str]:
    """fp32 everywhere; bf16 on CPUs (oneDNN; fast where the CPU has AVX-512 BF16 or AMX) and on
    Ampere or newer GPUs; fp16 on GPUs only (PyTorch's CPU kernels for fp16 convolutions are slow
    reference code)."""
    if device == "cpu":
        return {Precision.FP32: "float32", Precision.BF16: "bfloat16 weights and activations (oneDNN)"}
    if device == "cuda" and cuda_available():
        out = {Precision.FP32: "float32 (TF32 off)", Precision.FP16: "float16 weights and activations"}
        if torch.cuda.get_device_capability() >= (8, 0):
            out[Precision.BF16] = "bfloat16 weights and activations"
        return out
    return {}


def eager_limitation(device: str, precision: Precision) -> str:
    """Why eager PyTorch does not run ``precision`` on ``device`` (``torch_precisions`` lacks it)."""
    if device == "cpu" and precision is Precision.FP16:
        return "PyTorch's CPU fp16 convolutions are slow reference code, no fair baseline"
    return "PyTorch cannot run it here"


def torch_device(device: str) -> torch.device:
    if device == "cuda" and not cuda_available():
        raise DenseNetTRTError("no CUDA device here; build for device=cpu")
    return torch.device(device)


def apply_threads(manifest: EngineManifest) -> None:
    """Set torch's CPU thread count (process-wide) to the engine's, where one was given."""
    if manifest.threads:
        torch.set_num_threads(manifest.threads)


def apply_float32(manifest: EngineManifest) -> None:
    """An fp32 engine on CUDA computes in true float32, as its precision says: cuDNN's
    convolutions may not round to TF32 (PyTorch lets them by default), process-wide, as the
    thread count is. Measured on an H200: with TF32, a densenet121 TorchScript fp32 engine was
    2.0e-3 off eager float32, five times the fp32 tolerance."""
    if manifest.device.type == "cuda" and manifest.precision is Precision.FP32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


class TorchBackendBase:
    """Devices, precisions and checks of a backend whose engines PyTorch itself runs."""

    extra = ""
    settings: type[Settings] = Settings
    int8_placement = MODELOPT

    @property
    def devices(self) -> tuple[str, ...]:
        return torch_devices()

    def available(self) -> Availability:
        return Availability(True)

    def precisions(self, device: str) -> dict[Precision, str]:
        return torch_precisions(device)

    def io_dtype(self, precision: Precision) -> torch.dtype:
        return precision.dtype

    def files(self, fmt: str) -> tuple[str, ...]:
        return (self.file,)

    def versions(self) -> dict[str, str]:
        return {}  # torch's version is in every manifest

    def check_compatible(self, manifest: EngineManifest) -> None:
        device = manifest.device.type
        torch_device(device)
        if manifest.precision not in torch_precisions(device):
            raise DenseNetTRTError(
                f"this {manifest.precision} engine cannot run on this {device}: PyTorch here does "
                f"{', '.join(torch_precisions(device))} (bf16 on a GPU needs compute capability 8.0 or newer)"
            )
