"""The machine an engine is built for or runs on: operating system and CPU architecture, CPU
model, GPU and driver."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def platform_name() -> str:
    """The operating system and CPU architecture, e.g. ``Linux-x86_64``: what compiled code
    (TensorRT plans, AOTInductor packages) is tied to."""
    return f"{platform.system()}-{platform.machine()}"


def device_info(device: str) -> dict:
    """The machine an engine is built for: platform, CPU model and cores; GPU name, compute
    capability, driver."""
    info: dict = {"type": device, "platform": platform_name(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
                  "gpu": None}
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        driver = None
        if shutil.which("nvidia-smi"):
            result = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i",
                 str(torch.cuda.current_device())],
                capture_output=True, text=True, check=False,
            )
            driver = result.stdout.strip() or None
        info["gpu"] = {
            "name": torch.cuda.get_device_name(),
            "compute_capability": f"{major}.{minor}",
            "driver": driver,
            "cuda": torch.version.cuda,
        }
    return info
