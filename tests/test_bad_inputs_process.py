"""Faults of the process and its environment rather than of an input (issue 25): Ctrl-C while
the command's modules load, standard output that cannot be written, a working folder that was
deleted, a disk that fills up while a build writes. Each is one line on stderr, no traceback,
and nothing left or changed under the working folder, as tests/test_bad_inputs.py's refusals."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from densenet_trt.cli import main
from helpers import mounted
from test_bad_inputs import engine, snapshot, work  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
# The console script as setup.py declares it: ``densenet-trt=MODULE:FUNCTION``.
ENTRY = re.search(r'"densenet-trt=([\w.]+):(\w+)"', (ROOT / "setup.py").read_text()).groups()
BUILD = ["build", "--model", "densenet_bc40_k12", "--backend", "torchscript"]


def default_sigint() -> None:
    """Ctrl-C as a user's shell gives it (see tests/test_artifact.py's ``default_sigint``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def densenet_trt(*args) -> list[str]:
    """The command line ``densenet-trt ARGS`` as the installed console script runs it."""
    module, function = ENTRY
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())",
            *map(str, args)]


def start(command: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=default_sigint, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def one_line(process: subprocess.Popen, status: int, message: str, seconds: float = 60) -> None:
    """``process`` ends with ``status`` and ``message`` as the one line on stderr."""
    try:
        _, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running after {seconds} s")
    assert process.returncode == status, err
    assert err.splitlines() == [message], err


# --- a disk that fills up while a writer writes (densenet_trt/artifact.py, save_via_memory) ------

@pytest.mark.parametrize("args, output", [
    ([*BUILD, "-q", "--no-verify", "-o", "small", "--name", "b"], "small/b"),  # torch.jit.save
    pytest.param(["export", "--model", "densenet_bc40_k12", "--format", "exported-program", "-q", "-o", "small/x.pt2"],
                 "small/x.pt2", marks=pytest.mark.slow),  # torch.export.save, after a capture of 10 s
], ids=["build-torchscript", "export-exported-program"])
def test_a_disk_that_fills_up_while_writing_is_one_line_and_leaves_nothing(work, args, output):
    """The free space is checked before the work (tests/test_bad_inputs.py), so another program
    fills the disk once the writer's temporary appears: torch's C++ zip writer aborted the
    process (SIGABRT, ``terminate called after throwing c10::Error``) and left its temporary."""
    with mounted(work / "small", "size=20m") as small:
        writer = start(densenet_trt(*args), work)
        deadline = time.monotonic() + 60
        while not list(small.iterdir()):
            assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()
            time.sleep(0.01)
        (small / "filler").write_bytes(bytes(shutil.disk_usage(small).free - (100 << 10)))
        one_line(writer, 1, f"error: no space left on device writing {output}: free 1.4 MB there, or write "
                            "elsewhere (0.1 MB free there now)")
        (small / "filler").unlink()
        assert list(small.iterdir()) == []
