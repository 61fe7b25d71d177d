"""Every input read through one reader that refuses by name (densenet_trt/reading.py): a path
that is not a regular file, an unreadable file, a file over its size limit, a numpy file that
is not what its name says or holds members that are not arrays, an image whose pixels (or its
resized copy's) exceed the stated limit, a checkpoint of meta or sparse tensors, an engine file
its runtime cannot load, a manifest nested too deeply. Each is one line on stderr, exit status
1, no traceback, nothing changed (tests/cli/test_bad_inputs.py ``refused``)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densenet_trt.engine.artifact import sha256_file
from densenet_trt.model.data import MAX_IMAGE_PIXELS
from densenet_trt.reading import TEXT_LIMIT
from test_bad_inputs import refused, snapshot, within
from test_bad_inputs_commands import ENGINE, MODEL, base, work  # noqa: F401 (fixtures)

PREDICT = ["predict", ENGINE, "images/a.png", "--json"]


# --- special files and size limits: reading.input_file -----------------------------------------

@pytest.mark.parametrize("labels, message", [
    ("/dev/zero", "labels file /dev/zero is not a regular file (a character device)"),
    ("huge.txt", f"labels file huge.txt is {TEXT_LIMIT + 1} bytes, over the limit of {TEXT_LIMIT} bytes"),
])
def test_labels_that_are_not_a_small_regular_file_are_refused(work, labels, message):
    with open(work / "huge.txt", "wb") as f:  # sparse: no disk used
        f.truncate(TEXT_LIMIT + 1)
    refused([*PREDICT, "--labels", labels], work, message)


def test_labels_from_a_named_pipe_are_refused_without_waiting(work):
    os.mkfifo(work / "l.fifo")
    within(lambda: refused([*PREDICT, "--labels", "l.fifo"], work,
                           "labels file l.fifo is not a regular file (a named pipe)"), work / "l.fifo")


def test_a_manifest_over_the_size_limit_is_refused(work):
    with open(work / ENGINE / "manifest.json", "r+b") as f:
        f.truncate(TEXT_LIMIT + 1)
    refused(["info", ENGINE], work, f"engine document {ENGINE}/manifest.json is {TEXT_LIMIT + 1} bytes, over the limit")


@pytest.mark.parametrize("command", [["info", ENGINE], ["verify", ENGINE, "-q"]])
def test_a_manifest_nested_too_deeply_is_refused(work, command):
    path = work / ENGINE / "manifest.json"
    document = json.loads(path.read_text())
    text = json.dumps(document)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(text)
    refused(command, work, f"{ENGINE}/manifest.json is corrupt (JSON nested too deeply to read); rebuild the engine")


# --- permission denied: one line, for real ------------------------------------------------------

def refused_unreadable(args, cwd: Path, unreadable: Path, message: str) -> None:
    """``refused(args, cwd, message)`` with ``unreadable`` made mode 000. As root, mode 000 does
    not stop reads: the command then runs in a child process without the capabilities that
    override file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), where it does."""
    unreadable.chmod(0)
    try:
        if os.geteuid() != 0:
            refused(args, cwd, message)
            return
        if shutil.which("setpriv") is None:
            pytest.skip("as root, mode 000 does not stop reads, and setpriv (to drop the capabilities "
                        "that override it) is not installed")
        before = snapshot(cwd)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                            os.environ.get("PYTHONPATH", "")])}
        result = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
             sys.executable, "-m", "densenet_trt", *map(str, args)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        )
        if "setpriv:" in result.stderr:
            pytest.skip(f"as root, mode 000 does not stop reads, and setpriv cannot drop the capabilities "
                        f"that override it here: {result.stderr.strip()}")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert snapshot(cwd) == before
    finally:
        unreadable.chmod(0o644)


def test_an_unreadable_engine_file_is_one_line(work):
    refused_unreadable(["verify", ENGINE, "-q"], work, work / ENGINE / "model.onnx",
                       f"cannot read engine file {ENGINE}/model.onnx: permission denied")


def test_an_unreadable_calibration_file_is_one_line(work, shared_calibration):
    shutil.copytree(shared_calibration, work / "c")
    refused_unreadable(["build", "--model", "densenet_bc40_k12", "--backend", "onnxruntime", "--precision", "int8",
                        "--calibration", "c", "-o", "engines", "-q", "--no-speed-check"], work,
                       work / "c" / "quantizers.pt", "cannot read calibration file c/quantizers.pt: permission denied")


# --- numpy files: reading.read_npy, reading.read_npz --------------------------------------------

IMAGES = np.zeros((4, 3, 32, 32), np.float32)


def npz_as_npy(path):
    np.savez(path.with_suffix(".tmp.npz"), images=IMAGES)
    path.with_suffix(".tmp.npz").rename(path)


def npy_as_npz(path):
    np.save(path.with_suffix(".tmp.npy"), IMAGES)
    path.with_suffix(".tmp.npy").rename(path)


def junk_images_member(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images", b"not an array")


def junk_beside_images(path):
    np.savez(path, images=IMAGES)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", b"not an array")


def object_images(path):
    np.savez(path, images=np.array([IMAGES, "code"], dtype=object))


NUMPY_FILES = {
    "npy name holds npz": ("d.npy", npz_as_npy,
                           "data file d.npy is named .npy but holds an .npz archive; rename it to .npz"),
    "npz name holds npy": ("d.npz", npy_as_npz,
                           "data file d.npz is named .npz but holds one .npy array; rename it to .npy"),
    "zip with a junk images member": ("d.npz", junk_images_member,
                                      "data file d.npz has member 'images', which is not a numpy array"),
    "junk member beside the images": ("d.npz", junk_beside_images,
                                      "data file d.npz has member 'notes.txt', which is not a numpy array"),
    "object array": ("d.npz", object_images, "pickled Python objects, which are never loaded"),
}
DATA_COMMANDS = {
    "calibrate": ["calibrate", "--model", "densenet_bc40_k12", "-q", "--samples", "16", "--batch-size", "16",
                  "--no-onnxruntime", "--data"],
    "compare": ["compare", ENGINE, "-q", "--data"],
}


@pytest.mark.parametrize("command", list(DATA_COMMANDS.values()), ids=list(DATA_COMMANDS))
@pytest.mark.parametrize("name, make, message", list(NUMPY_FILES.values()), ids=list(NUMPY_FILES))
def test_a_numpy_file_that_is_not_what_its_name_says_is_refused_by_name(work, command, name, make, message):
    make(work / name)
    refused([*command, name], work, message)


# --- images: data.MAX_IMAGE_PIXELS ---------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1_000_000), (1_000_000, 1)])
def test_an_image_whose_resized_copy_is_over_the_pixel_limit_is_refused(work, size):
    Image.new("L", size).save(work / "x.png")
    refused(["predict", ENGINE, "x.png", "--json"], work,
            f"x.png: refused as a possible decompression bomb: resized to a shorter side of 32 it has "
            f"{size[0] * 32}x{size[1] * 32} = {size[0] * size[1] * 1024} pixels, over the limit of {MAX_IMAGE_PIXELS}")


# --- checkpoints: weights.read_state_dict --------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("tensor, kind", [
    (lambda: torch.empty(4, 3, 3, 3, device="meta"), "a meta tensor (a shape without values)"),
    (lambda: torch.eye(3).to_sparse(), "a sparse_coo tensor"),
    (lambda: torch.eye(3).to_sparse_csr(), "a sparse_csr tensor"),
], ids=["meta", "sparse_coo", "sparse_csr"])
def test_a_checkpoint_of_tensors_without_dense_values_is_refused_by_name(work, tensor, kind):
    torch.save({"features.conv0.weight": tensor()}, work / "t.pth")
    refused(["build", *MODEL, "--backend", "torchscript", "-o", "engines", "-q", "--weights", "t.pth"], work,
            f"checkpoint t.pth holds features.conv0.weight as {kind}")


# --- engine files their runtime cannot load: engine.load -----------------------------------------

@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_an_engine_file_replaced_by_a_pickle_is_one_line(work, small_engine, edit_manifest, backend):
    folder = work / ENGINE
    if backend == "torchscript":
        shutil.rmtree(folder)
        shutil.copytree(small_engine("torchscript", "fp32").path, folder)
    main = json.loads((folder / "manifest.json").read_text())["main_file"]
    torch.save({"weight": torch.zeros(2)}, folder / main)

    def recompute(data):
        data["files"][main] = sha256_file(folder / main)

    edit_manifest(folder, recompute)
    refused(["verify", ENGINE, "-q"], work, f"{ENGINE}/{main}: {backend} cannot load it (")
