"""Bad input and faults, as a user meets them on the command line: each is one line on stderr,
exit status 1, no traceback, nothing half-written, and nothing that was there before changed."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from densenet_trt.cli import main
from helpers import finishes, mounted, png_header, write_report


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content (hidden temporaries included)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args, cwd: Path, message: str, status: int = 1) -> None:
    """``densenet-trt ARGS`` run in ``cwd`` exits 1 with one line naming ``message`` (``status``
    2: Click's refusal of an option's value, its usage lines and ``message``), and leaves every
    file under ``cwd`` as it was."""
    before = snapshot(cwd)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)
    assert result.exit_code == status, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    if status == 1:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in (lines[0] if status == 1 else result.stderr), result.stderr
    assert "Traceback" not in result.output
    assert snapshot(cwd) == before


@pytest.fixture
def work(tmp_path):
    """A folder with engines/, calibration/ and an unrelated folder, each holding a file."""
    for sub in ("engines/other-engine", "calibration/other-calibration", "unrelated"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "keep.txt").write_text(sub)
    return tmp_path


BAD_NAMES = [".", "..", "sub/dir", "/unrelated", ".hidden", ""]
SMALL = ["--model", "densenet_bc100_k12"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_build_name_that_is_not_one_folder_name_is_refused_before_any_work(work, name):
    if name == "/unrelated":
        name = str(work / "unrelated")
    refused(["build", *SMALL, "--backend", "onnxruntime", "-o", "engines", "--name", name, "--force"],
            work, "is not a plain folder name")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_calibrate_name_that_is_not_one_folder_name_is_refused_before_any_work(work, name):
    if name == "/unrelated":
        name = str(work / "unrelated")
    refused(["calibrate", *SMALL, "--synthetic", "-o", "calibration", "--name", name, "--force"],
            work, "is not a plain folder name")


# --- data and images (densenet_trt/model/data.py) ---------------------------------------------------

def within(call, fifo: Path, seconds: float = 20) -> None:
    """Run ``call()``; fail, and unblock it, if it still runs after ``seconds`` (reading a named
    pipe waits for a writer forever); raise what it raised."""
    error = finishes(call, fifo, seconds)
    if error is not None:
        raise error


@pytest.fixture(scope="module")
def engine(shared_engine):
    """A small random-weight engine (ONNX Runtime, 3x32x32, CIFAR preprocessing) to predict with."""
    return shared_engine.path


def test_predict_refuses_a_float_image_outside_0_1_by_name(work, engine):
    Image.fromarray(np.full((8, 8), 255.0, np.float32)).save(work / "float.tif")
    # predict --json: progress would be a second line on stderr
    refused(["predict", engine, "float.tif", "--json"], work, "float.tif: a float image (Pillow mode F) must hold values in [0, 1]")


@pytest.mark.parametrize("side", [100_000, 10_000])
def test_decompression_bomb_is_one_line_naming_the_file(work, engine, side):
    png_header(work / "bomb.png", side, side)
    refused(["predict", engine, "bomb.png", "--json"], work, "bomb.png: refused as a possible decompression bomb")
    (work / "images").mkdir()
    (work / "bomb.png").rename(work / "images" / "bomb.png")
    refused(["calibrate", *SMALL, "--data", "images", "-o", "calibration", "-q"], work,
            "1 unreadable image file(s) in images, first: images/bomb.png: refused as a possible decompression bomb")


@pytest.mark.parametrize("mean, std, message", [
    ("nan", "0.2", "mean values must be finite numbers, got [nan]"),
    ("inf", "0.2", "mean values must be finite numbers, got [inf]"),
    ("0.5", "inf", "std values must be finite numbers, got [inf]"),
    ("0.5,0.5,0.5", "0.2,nan,0.2", "std values must be finite numbers, got [0.2, nan, 0.2]"),
    ("0.5", "0", "std values must be positive, got [0.0]"),
])
def test_build_refuses_mean_and_std_that_are_not_finite_or_positive(work, mean, std, message):
    refused(["build", *SMALL, "--backend", "onnxruntime", "-o", "engines", "--mean", mean, "--std", std],
            work, message)


@pytest.mark.parametrize("name, keep", [("cut.npz", 0.5), ("cut.npy", 0.5), ("junk.npz", 0)])
def test_calibrate_refuses_a_cut_or_junk_numpy_file(work, name, keep):
    images = np.zeros((4, 3, 32, 32), np.float32)
    path = work / name
    (np.save(path, images) if name.endswith(".npy") else np.savez(path, images=images))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)] if keep else os.urandom(len(data)))
    refused(["calibrate", *SMALL, "--data", name, "-o", "calibration", "-q"], work, f"cannot read {name} as a numpy file")


def test_calibrate_refuses_a_named_pipe_as_data(work):
    os.mkfifo(work / "pipe.npz")
    within(lambda: refused(["calibrate", *SMALL, "--data", "pipe.npz", "-o", "calibration", "-q"], work,
                           "data file pipe.npz is not a regular file (a named pipe)"), work / "pipe.npz")


def test_predict_refuses_a_named_pipe_as_image(work, engine):
    os.mkfifo(work / "pipe.png")
    within(lambda: refused(["predict", engine, "pipe.png", "--json"], work,
                           "image pipe.png is not a regular file (a named pipe)"), work / "pipe.png")


# --- ONNX opset (densenet_trt/engine/capture.py) ---------------------------------------------------------

@pytest.mark.parametrize("opset", ["99", "17"])
def test_export_refuses_an_opset_it_cannot_write(work, opset):
    refused(["export", *SMALL, "--format", "onnx", "--opset", opset, "-o", "x.onnx", "-q"], work,
            f"ONNX opset {opset} is not supported; use 18 to 28")


# --- checkpoints (densenet_trt/model/weights.py) --------------------------------------------------------

def test_export_refuses_random_bytes_as_weights_without_unsafe_advice(work):
    (work / "junk.pth").write_bytes(os.urandom(4096))
    refused(["export", *SMALL, "--weights", "junk.pth", "--format", "onnx", "-o", "x.onnx", "-q"], work,
            "junk.pth is not a checkpoint densenet-trt can read (not a state_dict saved with torch.save, nor safetensors)")
    result = CliRunner().invoke(main, ["export", *SMALL, "--weights", str(work / "junk.pth"), "--format", "onnx",
                                       "-o", str(work / "x.onnx"), "-q"])
    assert "weights_only" not in result.stderr


def test_build_refuses_weights_with_nan(work):
    import torch

    from densenet_trt import create_model

    state = create_model("densenet_bc100_k12").state_dict()
    state["features.conv0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, work / "nan.pth")
    refused(["build", *SMALL, "--weights", "nan.pth", "--backend", "onnxruntime", "-o", "engines", "-q"], work,
            "checkpoint nan.pth has NaN or Inf values in features.conv0.weight")


# --- outputs that cannot be written (build, calibrate, export-triton, profile) --------------------

@pytest.fixture
def read_only(work):
    """``work/ro``, a folder no one can write in: a read-only tmpfs mounted there (as root, whom
    permission bits do not stop), or, for another user, a folder without write permission."""
    folder = work / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("as root, permission bits do not stop writes, and there is no mount command for a read-only tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"as root, permission bits do not stop writes, and a read-only tmpfs cannot be mounted here: "
                    f"{mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


WRITERS = {
    "build": (["build", *SMALL, "--backend", "onnxruntime", "-o", "{F}"], "give another --output DIR"),
    "calibrate": (["calibrate", *SMALL, "--synthetic", "-o", "{F}"], "give another --output DIR"),
    "export-triton": (["export-triton", "{E}", "--repository", "{F}"], "give another --repository DIR"),
    "profile": (["profile", "{E}", "--iterations", "1", "--json", "{F}/r.json"], ""),
}


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("where", ["read-only", "under a file"])
def test_writers_refuse_a_folder_they_cannot_write_before_any_work(work, engine, request, command, where):
    """No progress line either: the check comes before the work (calibrating took ~35 s before
    export-triton's traceback or calibrate's late failure)."""
    if where == "read-only":
        folder = request.getfixturevalue("read_only").name
        message = "cannot write in folder 'ro' ("
    else:
        folder = "unrelated/keep.txt/sub"
        message = ("folder 'unrelated/keep.txt/sub' for r.json does not exist" if command == "profile" else
                   "cannot write in folder 'unrelated/keep.txt/sub' (unrelated/keep.txt is a file, not a folder)")
    args, fix = WRITERS[command]
    refused([a.replace("{F}", folder).replace("{E}", str(engine)) for a in args], work, message)
    if fix:
        refused([a.replace("{F}", folder).replace("{E}", str(engine)) for a in args], work, fix)


# --- Triton model names (densenet_trt/deploy/triton.py) ------------------------------------------------

def test_export_triton_refuses_a_model_name_that_would_rewrite_the_config(work, engine):
    refused(["export-triton", engine, "--repository", "repo", "--model-name", 'x" platform: "evil'], work,
            "model name 'x\" platform: \"evil' is not a Triton model name: use letters, digits, '_', '-' and '.'")
    assert not (work / "repo").exists()


# --- profile amounts (densenet_trt/profiling/profiler.py) ---------------------------------------------------

@pytest.mark.parametrize("flag, value, message", [
    ("--duration", "inf", "duration must be a positive number of seconds up to 3600, got inf"),
    ("--duration", "nan", "duration must be a positive number of seconds up to 3600, got nan"),
    ("--duration", "3601", "duration must be a positive number of seconds up to 3600, got 3601.0"),
    ("--warmup-duration", "inf", "warmup_duration must be a positive number of seconds up to 3600, got inf"),
    ("--warmup-duration", "nan", "warmup_duration must be a positive number of seconds up to 3600, got nan"),
    ("--iterations", "1000001", "iterations must be a positive integer up to 1,000,000, got 1000001"),
    ("--warmup-iterations", "1000001", "warmup_iterations must be a count from 0 to 1,000,000, got 1000001"),
    ("--gap", "inf", "gap must be 0 to 10 seconds, got inf"),
])
def test_profile_refuses_amounts_that_would_never_end(work, engine, flag, value, message):
    refused(["profile", engine, flag, value], work, message)


# --- builds that cannot fit in memory (densenet_trt/engine/memory.py) ------------------------------------

@pytest.mark.parametrize("args", [["--batch", "1:1:100000"], ["--image-size", "100000"],
                                  ["--num-classes", str(10**9)]])
def test_build_refuses_at_once_what_would_not_fit_in_memory(work, args):
    start = time.perf_counter()
    refused(["build", "--model", "densenet_bc40_k12", "--backend", "onnxruntime", "-o", "engines", *args], work,
            "of memory (")
    assert time.perf_counter() - start < 1.0
    assert sorted(p.name for p in (work / "engines").iterdir()) == ["other-engine"]


# --- tampered calibration folders (densenet_trt/int8/calibration.py) -----------------------------------

@pytest.fixture(scope="module")
def calibration(shared_calibration):
    return shared_calibration


def tampered(calibration: Path, into: Path, name: str, content: bytes) -> Path:
    """A copy of ``calibration`` with file ``name`` replaced by ``content`` and the report's
    sha256 of it updated, so that only the check of the content itself can refuse it."""
    folder = shutil.copytree(calibration, into)
    (folder / name).write_bytes(content)
    report = json.loads((folder / "report.json").read_text())
    report["files"][name] = hashlib.sha256(content).hexdigest()
    write_report(folder, report)
    return folder


def nan_gate_archive() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.full((8, 3, 32, 32), np.nan, np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, message", [
    ("quantizers.pt", os.urandom(4096), ("quantizers.pt is not a calibration state (ModelOpt's quantizer state "
                                         "that calibrate writes) for this model; calibrate again")),
    ("gate.npz", nan_gate_archive(), "gate.npz has NaN or Inf values in 8 of its 8 gate inputs"),
])
def test_build_refuses_a_tampered_calibration_by_file(work, calibration, name, content, message):
    tampered(calibration, work / "calibration" / "bad", name, content)
    refused(["build", "--model", "densenet_bc40_k12", "--precision", "int8", "--calibration", "calibration/bad",
             "--backend", "onnxruntime", "-o", "engines", "-q"], work, message)
# --- full and read-only disks (densenet_trt/engine/artifact.py) -----------------------------------------

def test_export_to_a_full_disk_is_one_line(work):
    """Refused before writing (the free space is checked against the model's size first); a
    disk that fills up while writing is tests/engine/test_artifact.py's."""
    with mounted(work / "small", "size=2m"):
        refused(["export", *SMALL, "--format", "onnx", "-o", "small/x.onnx", "-q"], work,
                "not enough free space in small: 2.1 MB free")


def test_export_triton_to_a_read_only_repository_is_one_line(work, engine):
    with mounted(work / "ro", "ro,size=1m"):
        refused(["export-triton", engine, "--repository", "ro", "--model-name", "m"], work,
                "cannot write in folder 'ro' (Read-only file system); give another --repository DIR")


def test_build_into_a_read_only_folder_is_one_line(work):
    with mounted(work / "ro", "ro,size=1m"):
        refused(["build", *SMALL, "--backend", "onnxruntime", "-o", "ro", "-q"], work,
                "cannot write in folder 'ro' (Read-only file system); give another --output DIR")
