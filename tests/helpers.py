"""Helpers tests share: a named-pipe guard, a tmpfs to fill or make read-only, a calibration
report edited on purpose, which of the run's small engines are built by ``-m slow`` only, and
the pinned sources of Torch-TensorRT and TensorRT that tests read (downloaded once into a cache)."""

import contextlib
import gc
import os
import struct
import subprocess
import sys
import threading
import urllib.request
import zlib
from pathlib import Path

import pytest


def finishes(call, fifo, seconds=10):
    """The exception ``call()`` raises, run in a thread: fail, and unblock it, if it is still
    running after ``seconds`` (reading a named pipe blocks until a writer opens it)."""
    outcome = []

    def target():
        try:
            call()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader gets end of file
        pytest.fail(f"still blocked on the named pipe {fifo} after {seconds} s")
    return outcome[0]


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A tmpfs mounted at ``folder`` with ``options``; the test is skipped where mounting is not
    permitted."""
    folder.mkdir(exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        reason = getattr(e, "stderr", None) or str(e)
        print(f"cannot mount a tmpfs here: {reason}")
        pytest.skip(f"cannot mount a tmpfs to fill or make read-only here: {reason.strip()}")
    try:
        yield folder
    finally:
        gc.collect()  # a failed writer's file may still be open, which keeps the mount busy
        if subprocess.run(["umount", str(folder)], check=False).returncode:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def write_report(folder: Path, report: dict) -> None:
    """Write calibration ``report`` into ``folder`` with its digest made again: a deliberate edit
    (an accidental one is caught by the digest)."""
    import json

    from densenet_trt.engine.manifest import DIGEST, digest, document_body

    (folder / "report.json").write_text(json.dumps({**report, DIGEST: digest(document_body(report))}))


def small_engine_param(backend: str, precision: str):
    """``(backend, precision)`` of a ``small_engine`` as a pytest param, marked slow for the builds
    that run with -m slow only: inductor's (an AOT compile of 18 s or more) and openvino's fp16 and
    bf16 (the fp32 graph, captured again, with a precision hint: 5 s each). The default run keeps
    openvino fp32 and int8, and bf16 on torchscript (model, inputs and gate in bf16)."""
    slow = backend == "inductor" or (backend == "openvino" and precision in ("fp16", "bf16"))
    return pytest.param((backend, precision), marks=[pytest.mark.slow] if slow else [], id=f"{backend}-{precision}")


# --- sources the tests read, pinned and cached ------------------------------------------------
# The cache folder: DENSENET_TRT_CONFORMANCE_CACHE, default ~/.cache/densenet-trt/conformance.

TORCH_TENSORRT_VERSION = "2.14.0"
# NVIDIA/TensorRT's release tags read here, by the commits they name (a moved tag is not followed).
TENSORRT_COMMITS = {"v10.3.0": "c5b9de37f7ef9034e2efc621c664145c7c12436e",
                    "v11.1": "82d1dca801c8318a5605399d5240780d0679e4e1"}


def source_cache() -> Path:
    return Path(os.environ.get("DENSENET_TRT_CONFORMANCE_CACHE", Path.home() / ".cache" / "densenet-trt" / "conformance"))


def torch_tensorrt_wheel() -> Path:
    """The torch-tensorrt 2.14.0 wheel: ``TORCH_TENSORRT_WHEEL``, else the cache's, else
    ``pip download --no-deps`` into the cache; the test is skipped, saying why, where none can be had."""
    given = os.environ.get("TORCH_TENSORRT_WHEEL")
    if given:
        return Path(given)
    cache, pattern = source_cache(), f"torch_tensorrt-{TORCH_TENSORRT_VERSION}-*.whl"
    found = sorted(cache.glob(pattern))
    if found:
        return found[-1]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"torch-tensorrt=={TORCH_TENSORRT_VERSION}", "--dest", str(cache)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip download torch-tensorrt=={TORCH_TENSORRT_VERSION} took over 10 minutes")
    found = sorted(cache.glob(pattern))
    if not found:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        pytest.skip(f"cannot get the torch-tensorrt {TORCH_TENSORRT_VERSION} wheel "
                    f"({lines[-1] if lines else result.returncode}); set TORCH_TENSORRT_WHEEL")
    return found[-1]


def tensorrt_source(tag: str, path: str) -> bytes:
    """The file ``path`` of NVIDIA/TensorRT at release ``tag`` (``TENSORRT_COMMITS``): from the
    git copy ``TENSORRT_GIT`` where it is set, else the cache's, else downloaded from GitHub at
    the pinned commit into the cache; the test is skipped, saying why, where none can be had."""
    given = os.environ.get("TENSORRT_GIT")
    if given:
        result = subprocess.run(["git", "--git-dir", given, "show", f"{TENSORRT_COMMITS[tag]}:{path}"],
                                capture_output=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"TENSORRT_GIT={given} has no {path} at {tag}: {result.stderr.decode().strip()}")
        return result.stdout
    cached = source_cache() / "tensorrt" / TENSORRT_COMMITS[tag] / path
    if not cached.is_file():
        url = f"https://raw.githubusercontent.com/NVIDIA/TensorRT/{TENSORRT_COMMITS[tag]}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except OSError as e:
            pytest.skip(f"cannot download TensorRT {tag}'s {path} ({e}); set TENSORRT_GIT to a git copy of "
                        "NVIDIA/TensorRT")
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + ".part")
        partial.write_bytes(data)
        partial.replace(cached)
    return cached.read_bytes()


@contextlib.contextmanager
def umask(mask: int):
    """The process umask set to ``mask`` inside the block."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` 8-bit grey pixels (the data is one row):
    a decompression bomb for the image readers."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 9))
                     + chunk(b"IEND", b""))
    return path
