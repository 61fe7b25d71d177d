"""Faults of the process and its environment rather than of an input (issue 25): Ctrl-C while
the command's modules load, standard output that cannot be written, a working folder that was
deleted, a disk that fills up while a build writes. Each is one line on stderr, no traceback,
and nothing left or changed under the working folder, as tests/cli/test_bad_inputs.py's refusals."""

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

ROOT = Path(__file__).resolve().parents[2]
# The console script as setup.py declares it: ``densenet-trt=MODULE:FUNCTION``.
ENTRY = re.search(r'"densenet-trt=([\w.]+):(\w+)"', (ROOT / "setup.py").read_text()).groups()
BUILD = ["build", "--model", "densenet_bc40_k12", "--backend", "torchscript"]


def default_sigint() -> None:
    """Ctrl-C as a user's shell gives it (see tests/engine/test_artifact.py's ``default_sigint``)."""
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


# --- Ctrl-C and SIGTERM while the command's modules load (densenet_trt/console.py) ---------------

@pytest.mark.parametrize("sig, delay", [(signal.SIGINT, 0.5), (signal.SIGINT, 0.9), (signal.SIGINT, 1.3),
                                        (signal.SIGTERM, 0.7)], ids=lambda v: getattr(v, "name", f"{v}s"))
def test_a_signal_while_the_command_starts_is_one_line_and_leaves_nothing(work, sig, delay):
    """While torch and the command's modules load, and after: one line and the shell's status,
    never a KeyboardInterrupt traceback from inside an import (nor a signal lost there)."""
    before = snapshot(work)
    build = start(densenet_trt(*BUILD, "-o", "engines", "--name", "s"), work)
    time.sleep(delay)
    build.send_signal(sig)
    # The command line starts without torch (tests/cli/test_cli.py), so by then the build may have
    # said its first steps: the error is the one line after them.
    _, err = build.communicate(timeout=60)
    assert build.returncode == 128 + sig and err.splitlines()[-1] == f"error: interrupted by {sig.name}", err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert snapshot(work) == before and not (work / "engines" / "s").exists()


def test_the_console_script_runs_before_torch_loads():
    """What the signal and working-folder tests rely on: ``import densenet_trt`` and the console
    script's module import no torch (the package's names load on first use)."""
    module, _ = ENTRY
    code = f"import sys, densenet_trt, {module}; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


# --- standard output that cannot be written (densenet_trt/cli/__init__.py, _Group.main) ---------

@pytest.fixture
def image(work):
    Image.new("RGB", (40, 40), (10, 200, 30)).save(work / "a.png")
    return work / "a.png"


def closed_pipe():
    read, write = os.pipe()
    os.close(read)
    return open(write, "w")


@pytest.mark.parametrize("output, status, message", [
    (lambda: open("/dev/full", "w"), 1, "error: cannot write the output: no space left on device\n"),
    (closed_pipe, 141, ""),  # a reader that has gone, as ``| head -1``: quiet, as other Unix tools
], ids=["dev-full", "closed-pipe"])
@pytest.mark.parametrize("args", [["info", "ENGINE"], ["models"], ["predict", "ENGINE", "IMAGE", "--json"]],
                         ids=["info", "models", "predict-json"])
def test_output_that_cannot_be_written_is_one_line(engine, image, capsys, monkeypatch, output, status, message, args):
    """Every command's standard output goes through the group: ``densenet-trt info e > /dev/full``."""
    args = [{"ENGINE": str(engine), "IMAGE": str(image)}.get(a, a) for a in args]
    stdout = output()
    monkeypatch.setattr(sys, "stdout", stdout)
    with pytest.raises(SystemExit) as e:
        main.main(args, prog_name="densenet-trt")
    stdout.close()
    assert e.value.code == status
    assert capsys.readouterr().err == message


@pytest.mark.parametrize("output", ["/dev/full", "closed pipe"])
def test_output_that_cannot_be_written_says_nothing_more_at_exit(engine, tmp_path, output):
    """As a process: nothing more when Python flushes its streams at exit (Python's advice in
    the signal module's note on SIGPIPE)."""
    if output == "/dev/full":
        with open("/dev/full", "w") as full:
            info = subprocess.Popen(densenet_trt("info", engine), cwd=tmp_path, stdout=full, stderr=subprocess.PIPE,
                                    text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        one_line(info, 1, "error: cannot write the output: no space left on device")
    else:
        info = start(densenet_trt("info", engine), tmp_path)
        info.stdout.close()
        _, err = info.communicate(timeout=60)
        assert (info.returncode, err) == (141, "")


# --- a working folder that was deleted (densenet_trt/console.py) --------------------------------

@pytest.mark.parametrize("args", [["info", "engines/e"], [*BUILD, "-o", "engines", "-q"]], ids=["info", "build"])
def test_a_deleted_working_folder_is_one_line_before_torch_loads(tmp_path, args):
    (tmp_path / "gone").mkdir()
    process = start(["sh", "-c", 'rmdir "$PWD" && exec "$@"', "sh", *densenet_trt(*args)], tmp_path / "gone")
    one_line(process, 1, "error: the working folder no longer exists (deleted or moved); cd to a folder that exists")
    assert list(tmp_path.iterdir()) == []


# --- a disk that fills up while a writer writes (densenet_trt/engine/artifact.py, save_via_memory) ------

@pytest.mark.parametrize("args, output", [
    ([*BUILD, "-q", "--no-verify", "-o", "small", "--name", "b"], "small/b"),  # torch.jit.save
    pytest.param(["export", "--model", "densenet_bc40_k12", "--format", "exported-program", "-q", "-o", "small/x.pt2"],
                 "small/x.pt2", marks=pytest.mark.slow),  # torch.export.save, after a capture of 10 s
], ids=["build-torchscript", "export-exported-program"])
def test_a_disk_that_fills_up_while_writing_is_one_line_and_leaves_nothing(work, args, output):
    """The free space is checked before the work (tests/cli/test_bad_inputs.py), so another program
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
