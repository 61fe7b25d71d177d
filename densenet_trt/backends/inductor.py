"""AOTInductor: torch.export, then Inductor compiles the graph ahead of time into a `.pt2`
package of generated C++ (CPU) or Triton (GPU) kernels.

Loads in Python with ``torch._inductor.aoti_load_package`` and in C++ with
``torch::inductor::AOTIModelPackageLoader``. Building needs a C++ compiler and takes about a
minute for a small preset on 2 cores (several for densenet121).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..engine.capture import capture_exported_program
from ..progress import library_chatter, say, step
from ..engine.spec import BuildSpec
from ._torch import TorchBackendBase, apply_float32, apply_threads, torch_device
from .base import Availability, Runtime, TritonTarget, check_native, check_same_gpu, check_same_torch, no_triton_runner

if TYPE_CHECKING:
    from ..engine.manifest import EngineManifest


class InductorBackend(TorchBackendBase):
    name = "inductor"
    formats = ("aot-inductor",)
    file = "model.pt2"

    def available(self) -> Availability:
        if shutil.which("c++") is None and shutil.which("g++") is None:
            return Availability(False, "no C++ compiler found", "install one (apt-get install g++)")
        return Availability(True)

    def build(self, model: nn.Module, spec: BuildSpec, folder: Path) -> dict[str, Any]:
        device = torch_device(spec.device)
        dtype = spec.precision.dtype
        program = capture_exported_program(model.to(device, dtype), spec.batch, spec.image_size, dtype, device)
        with library_chatter(), step(say, "compiling C++ kernels with AOTInductor: about a minute for a small preset on "
                                          "2 cores, several for densenet121", "compiled"):
            torch._inductor.aoti_compile_and_package(program, package_path=str(folder / self.file))
        return {}

    def load(self, folder: Path, manifest: EngineManifest) -> Runtime:
        device = torch_device(manifest.device.type)
        dtype = manifest.precision.dtype
        apply_threads(manifest)
        apply_float32(manifest)
        with library_chatter():
            runner = torch._inductor.aoti_load_package(str(folder / self.file))

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return runner(x.to(device, dtype))

        return Runtime(folder, manifest, run)

    def check_compatible(self, manifest: EngineManifest) -> None:
        super().check_compatible(manifest)
        check_native(manifest, "AOTInductor package")
        check_same_torch(manifest, "AOTInductor package")
        if manifest.device.type == "cuda":
            check_same_gpu(manifest, torch.cuda.get_device_capability(), "AOTInductor package")

    def triton_target(self, fmt: str) -> TritonTarget | str:
        """The sentence saying so: Triton has no runner for AOTInductor packages."""
        return no_triton_runner(self.name, fmt)
