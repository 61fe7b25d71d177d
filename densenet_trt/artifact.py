"""Files on disk: written whole or not at all, and checked by their sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from .errors import DenseNetTRTError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """``path`` as a Path, after checking that it may be (over)written and its folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise DenseNetTRTError(f"{path} exists; pass force=True to overwrite it")
    if path.is_dir():
        raise DenseNetTRTError(f"{path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise DenseNetTRTError(f"folder {str(folder)!r} for {path.name} does not exist")
    if not os.access(folder, os.W_OK):
        raise DenseNetTRTError(f"folder {str(folder)!r} is not writable")
    return path


def entry_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/name`` for an output ``name`` that is one plain folder name: anything that
    could reach outside ``folder`` or replace ``folder`` itself (``.``, ``..``, ``a/b``, an
    absolute path) is refused, as are names starting with ``.``, which the tool's temporary
    folders use."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or name.startswith(".")
        or "/" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or "\0" in name
    ):
        raise DenseNetTRTError(
            f"name {name!r} is not a plain folder name: give one name without '/' and not "
            f"starting with '.', for a folder inside {str(folder)!r}"
        )
    return Path(folder) / name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in the folder of ``path``; renamed to ``path`` when the block ends
    normally, removed when it raises (Ctrl-C included). The temporary keeps the suffix, for
    writers that choose the format by it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``path``; it replaces ``path`` when the block ends normally
    (an existing ``path`` only with ``force``) and is removed when it raises, Ctrl-C included."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            if not force:
                raise DenseNetTRTError(f"{path} exists; pass force=True to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path, but: str) -> dict[str, str]:
    """sha256 of every file under ``folder`` but the one called ``but``."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != but
    }


def check_files(folder: Path, files: dict[str, str], fix: str) -> None:
    """Every file of ``files`` (name -> sha256) is in ``folder`` with that sha256."""
    for name, digest in files.items():
        file = folder / name
        if not file.is_file():
            raise DenseNetTRTError(f"{file} is missing; {fix}")
        if sha256_file(file) != digest:
            raise DenseNetTRTError(
                f"{file} does not match its recorded sha256 (corrupt, truncated or modified); {fix}"
            )


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
