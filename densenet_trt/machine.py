"""The machine an engine is built for or runs on: operating system and CPU architecture, CPU
model, GPU and driver."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .errors import DenseNetTRTError


# Threads: 4 per CPU of this machine, at most 1024. torch crashes making 100,000 OpenMP threads,
# and 1024 on 2 cores made a small build take 12 s instead of 2 and a profile not end in 60 s
# (measured here). A manifest, written elsewhere, may record up to MANIFEST_MAX_THREADS.
MANIFEST_MAX_THREADS = 1024
MAX_THREADS = min(MANIFEST_MAX_THREADS, 4 * (os.cpu_count() or 1))


def check_threads(threads: Any, name: str = "threads") -> int:
    """``threads`` if it is an integer from 1 to ``MAX_THREADS``; else DenseNetTRTError."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise DenseNetTRTError(f"{name} must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return threads


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
        import torch

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


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def check_images_memory(count: int, in_channels: int, image_size: int, what: str = "samples") -> None:
    """Refuse, before allocating, ``count`` float32 images of ``in_channels`` x ``image_size``
    squared that would take more than half of this machine's memory (the model and its
    outputs need the rest); ``what`` names the count in the error (``samples``)."""
    need = count * in_channels * image_size * image_size * 4
    have = machine_memory()
    if need > have // 2:
        raise DenseNetTRTError(
            f"{what}={count} images of {in_channels}x{image_size}x{image_size} would take {need / 2**30:,.1f} GiB "
            f"of memory; this machine has {have / 2**30:.1f} GiB: give fewer {what}"
        )


class torch_threads:
    """Set torch's CPU threads for the block."""

    def __init__(self, threads: int | None):
        if threads is not None:
            check_threads(threads)
        import torch

        self.threads = threads
        self.torch = torch
        self.before = torch.get_num_threads()

    def __enter__(self):
        if self.threads:
            self.torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        self.torch.set_num_threads(self.before)
