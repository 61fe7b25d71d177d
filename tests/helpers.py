"""Helpers tests share: a named-pipe guard, a tmpfs to fill or make read-only, a calibration
report edited on purpose, and which of the run's small engines are built by ``-m slow`` only."""

import contextlib
import gc
import os
import subprocess
import threading
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

    from densenet_trt.manifest import DIGEST, digest, document_body

    (folder / "report.json").write_text(json.dumps({**report, DIGEST: digest(document_body(report))}))


def small_engine_param(backend: str, precision: str):
    """``(backend, precision)`` of a ``small_engine`` as a pytest param, marked slow for the builds
    that run with -m slow only: inductor's (an AOT compile of 18 s or more) and openvino's fp16 and
    bf16 (the fp32 graph, captured again, with a precision hint: 5 s each). The default run keeps
    openvino fp32 and int8, and bf16 on torchscript (model, inputs and gate in bf16)."""
    slow = backend == "inductor" or (backend == "openvino" and precision in ("fp16", "bf16"))
    return pytest.param((backend, precision), marks=[pytest.mark.slow] if slow else [], id=f"{backend}-{precision}")
