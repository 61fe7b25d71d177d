"""What the commands print: -q prints the result and nothing else (no library chatter a user
cannot act on), progress names every long step with its time, and the totals are the wall time."""

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_trt.engine.build import build
from densenet_trt.cli import main
from densenet_trt.progress import Stopwatch, library_chatter, process_age

ROOT = Path(__file__).resolve().parents[2]
MODEL = "densenet_bc40_k12"
CUDA_HOME = "No CUDA runtime is found, using CUDA_HOME='%s'"
JIT_SAVE = "`torch.jit.save` is deprecated. Please switch to `torch.export`."


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_library_chatter_hides_only_the_named_messages_and_only_within_its_block():
    logger, lines = logging.getLogger("torch.utils.cpp_extension"), Lines()
    logger.addHandler(lines)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            with library_chatter():
                logger.warning(CUDA_HOME, "/usr/local")
                logger.warning("Error checking compiler version for c++")
                warnings.warn(JIT_SAVE, FutureWarning)
                warnings.warn("a FutureWarning the user can act on", FutureWarning)
            logger.warning(CUDA_HOME, "/usr/local")
            warnings.warn(JIT_SAVE, FutureWarning)
    finally:
        logger.removeHandler(lines)
    assert lines.lines == ["Error checking compiler version for c++", CUDA_HOME % "/usr/local"]
    assert [str(w.message) for w in shown] == ["a FutureWarning the user can act on", JIT_SAVE]


def command(tmp_path, *args):
    """``densenet-trt ARGS`` as its own process, as a user runs it (torch's log handler and
    Python's warnings as they are outside pytest)."""
    return subprocess.run([sys.executable, "-m", "densenet_trt", *map(str, args)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": ""})


def only_the_result(result, starts: str, *more: str, warns: str | None = None) -> None:
    """Exit 0, nothing on stderr (but lines starting ``warns``, where given), and stdout is the
    result line (then lines starting with ``more``)."""
    assert result.returncode == 0, result.stderr
    assert all(warns and line.startswith(warns) for line in result.stderr.splitlines()), result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(more) and lines[0].startswith(starts), result.stdout
    assert all(line.startswith(m) for line, m in zip(lines[1:], more)), result.stdout


def test_quiet_torchscript_export_prints_only_its_result(tmp_path):
    result = command(tmp_path, "export", "--model", MODEL, "--format", "torchscript", "-o", "m.ts", "-q")
    only_the_result(result, "wrote m.ts")


@pytest.mark.slow  # 10 s: a fresh interpreter importing torch and ModelOpt
def test_modelopt_is_imported_without_torchs_cuda_home_notice(tmp_path):
    """ModelOpt imports torch.utils.cpp_extension, which logs that notice on a machine without a
    GPU where torch is a CUDA build (as here) and a CUDA toolkit is found; calibrate, int8 builds
    and int8 verify all import ModelOpt."""
    pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
    result = subprocess.run([sys.executable, "-c", "from densenet_trt.int8.calibration import modelopt_modules; "
                             "modelopt_modules()"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.slow
def test_quiet_calibrate_and_int8_build_print_only_their_results_and_use_every_sample(tmp_path):
    """20 images in batches of 8: the last batch of 4 is used too (it was dropped: 16 used)."""
    images = np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", images=images)
    calibrated = command(tmp_path, "calibrate", "--model", MODEL, "--data", "calib.npz", "--samples", "512",
                         "--batch-size", "8", "-q")
    only_the_result(calibrated, "calibration calibration/densenet_bc40_k12-max-32: max on 20 samples,")
    built = command(tmp_path, "build", "--model", MODEL, "--precision", "int8", "--calibration",
                    "calibration/densenet_bc40_k12-max-32", "-q")
    # The int8 count and speed show even with -q, and the warning where int8 is not faster here.
    only_the_result(built, "built engines/densenet_bc40_k12-", "int8 layers: ", "int8 speed: ",
                    warns="warning: int8 is not faster than this backend's float32 engine: ")


def test_an_aotinductor_build_says_before_its_compile_that_it_takes_about_a_minute(tmp_path, monkeypatch):
    """The compile is the long step (64 s for densenet_bc40_k12 on 2 cores): a line before it
    says so. The compile itself is stopped at its start, where it checks the line was said."""
    import torch._inductor

    lines = []

    def compile_package(*args, **kwargs):
        raise RuntimeError(f"the last line before the compile: {lines[-1]}")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_package)
    with pytest.raises(RuntimeError) as stopped:
        build(MODEL, backend="inductor", batch="1:2:4", output=tmp_path, name="e", progress=lines.append)
    assert str(stopped.value) == ("the last line before the compile: compiling C++ kernels with AOTInductor: about a "
                                  "minute for a small preset on 2 cores, several for densenet121")


@pytest.mark.slow
def test_quiet_inductor_build_and_verify_print_only_their_results(tmp_path):
    built = command(tmp_path, "build", "--model", MODEL, "--backend", "inductor", "--name", "e", "-q")
    only_the_result(built, "built engines/e/model.pt2")
    only_the_result(command(tmp_path, "verify", "engines/e", "-q"), "engines/e: 16 distinct random inputs")


def test_calibration_says_it_uses_every_sample_and_that_the_data_had_fewer_than_asked(tmp_path):
    from densenet_trt.int8.quantize import calibrate

    pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32))
    lines = []
    cal = calibrate(MODEL, data=tmp_path / "calib.npy", samples=512, batch_size=8, output=tmp_path / "cal",
                    onnxruntime=False, progress=lines.append)
    assert cal.report["data"]["used"] == 20 and cal.report["data"]["samples"] == 20
    assert "the calibration data has 20 samples, fewer than the 512 asked for: all of them are used" in lines
    assert any("on all 20 samples (3 batches of 8, the last of 4)" in line for line in lines), lines
    assert [line for line in lines if "calibration batch" in line] == [f"  calibration batch {i}/3" for i in (1, 2, 3)]


def test_build_says_each_step_and_each_gate_batch_with_its_time(tmp_path):
    lines = []
    build(MODEL, backend="torchscript", batch="1:2:4", output=tmp_path, name="e", progress=lines.append)
    said = "\n".join(lines)
    for step in ("scripting and freezing the model with TorchScript", r"scripted in \d", r"built the engine in \d",
                 r"  batch 1: max abs .* \(\d[\d.]* s\)", r"  batch 4: max abs .* \(\d[\d.]* s\)"):
        assert re.search(step, said), (step, said)


def test_the_build_result_gives_the_commands_wall_time_and_the_compile_time(tmp_path):
    result = CliRunner().invoke(main, ["build", "--model", MODEL, "--backend", "torchscript", "-o", tmp_path, "-q"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\(torchscript, fp32, batch 1, 32x32\) in \d[\d.]* s \(compiling \d[\d.]* s\): ", result.stdout)


def test_the_stopwatch_counts_from_the_process_start_when_the_process_is_the_command(monkeypatch):
    assert Stopwatch().seconds() < 1  # called from Python: from now
    age = process_age()
    assert age is not None and age > 1  # this process has imported torch
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/densenet-trt", "build"])
    assert abs(Stopwatch().seconds() - age) < 1
