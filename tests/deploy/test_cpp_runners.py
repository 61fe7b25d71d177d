"""The C++ runners of the CPU engines `--backend auto` picks (examples/cpp): infer_onnxruntime and
infer_openvino, built with CMake against the onnxruntime and openvino wheels (no libtorch), run
on densenet_bc40_k12 engines (32x32) in fp32, bf16 and int8, their logits compared with
``densenet_trt.load``'s; and their errors.

infer_onnxruntime needs ONNX Runtime's C API header, which no PyPI package ships: CMake downloads
1.22.0's (pinned, SHA-256 checked), or takes DENSENET_TRT_ONNXRUNTIME_INCLUDE_DIR (a folder holding
onnxruntime_c_api.h); where neither can be had its tests are skipped with CMake's reason."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import densenet_trt
from densenet_trt.backends import BACKENDS
from densenet_trt.engine.capture import example_input

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cpp"
PROGRAMS = {"onnxruntime": "infer_onnxruntime", "openvino": "infer_openvino"}
CASES = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
         ("openvino", "int8")]


def run(*command):
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)


def built(result):
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="session")
def programs(tmp_path_factory):
    """CMake's build of the two programs, once per session: {backend: program path, or the line
    of CMake's output that says why it was skipped}."""
    cmake = shutil.which("cmake")
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cmake is None or compiler is None:
        pytest.skip("building the C++ runners needs cmake and a C++ compiler (pip install cmake; apt install g++)")
    build = tmp_path_factory.mktemp("cpp-runners")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    include = os.environ.get("DENSENET_TRT_ONNXRUNTIME_INCLUDE_DIR")
    extra = [f"-DONNXRUNTIME_INCLUDE_DIR={include}"] if include else []
    configured = built(run(cmake, "-S", EXAMPLES, "-B", build, *generator, "-DCMAKE_BUILD_TYPE=Release",
                           f"-DPython3_EXECUTABLE={sys.executable}", *extra))
    found = {}
    for backend, program in PROGRAMS.items():
        said = [line[3:] for line in configured.stdout.splitlines() if line.startswith(f"-- {program}: ")]
        if any(line.startswith(f"{program}: skipped") for line in said):
            found[backend] = "; ".join(said)  # why, with the download's error where it failed
        else:
            built(run(cmake, "--build", build, "-j2", "--target", program))
            found[backend] = build / program
    return found


@pytest.fixture(scope="session", params=[pytest.param(c, id="-".join(c)) for c in CASES])
def engine(request, tmp_path_factory, programs):
    """A densenet_bc40_k12 engine of the case, batch 1:4:8, 32x32 (int8: ``small_int8_engine``)."""
    backend, precision = request.param
    if not isinstance(programs[backend], Path):
        pytest.skip(programs[backend])
    if not BACKENDS[backend].available().ok:
        pytest.skip(BACKENDS[backend].available().message(backend))
    if precision not in BACKENDS[backend].precisions("cpu"):
        pytest.skip(f"{backend} cannot build {precision} on this CPU")
    if precision == "int8":
        return request.getfixturevalue("small_int8_engine")(backend)
    return densenet_trt.build("densenet_bc40_k12", backend=backend, precision=precision, batch="1:4:8",
                              output=tmp_path_factory.mktemp(f"{backend}-{precision}"))


def infer(programs, engine, *args):
    return run(programs[engine.manifest.backend], *args)


def error_line(result):
    """The one line a failing program prints on stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_logits_equal_the_python_engines(programs, engine, batch, tmp_path):
    """The folder (its manifest names the model file) and the model file itself, at batches
    within the range: the program's logits are the Python engine's, computed with the same
    library and settings."""
    x = example_input(batch, 32, seed=200 + batch).numpy()
    np.save(tmp_path / "x.npy", x)
    expected = densenet_trt.load(engine.path)(x).numpy()
    for target in (engine.path, engine.file):
        result = built(infer(programs, engine, target, tmp_path / "x.npy", "--output", tmp_path / "logits.npy"))
        logits = np.load(tmp_path / "logits.npy")
        assert logits.dtype == np.float32 and logits.shape == (batch, 10)
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
        assert result.stdout.splitlines()[0] == "top-5 classes (softmax probability) per sample:"
        assert len(result.stdout.splitlines()) == batch + 1


def test_uint8_images_get_the_manifests_preprocessing(programs, engine, tmp_path):
    """uint8 (N, H, W, C) images at the crop size: the program's logits are those of the same
    images saved as PNGs and read with densenet_trt's preprocessing from the manifest."""
    from PIL import Image

    from densenet_trt.model.data import read_image

    images = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", images)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    x = np.stack([read_image(tmp_path / f"{i}.png", engine.manifest.preprocessing) for i in range(3)])
    built(infer(programs, engine, engine.path, tmp_path / "u8.npy", "--output", tmp_path / "logits.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), densenet_trt.load(engine.path)(x).numpy(),
                               rtol=0, atol=1e-5)
    np.save(tmp_path / "small.npy", images[:, :16])
    line = error_line(infer(programs, engine, engine.path, tmp_path / "small.npy"))
    assert line.endswith("holds uint8 images of shape (3, 16, 32, 3); this engine takes (N, 32, 32, 3): resized "
                         "and center-cropped as its manifest's preprocessing says")


def test_the_manifests_thread_count_is_used(programs, engine, edit_manifest, tmp_path):
    folder = shutil.copytree(engine.path, tmp_path / "e")
    edit_manifest(folder, lambda m: m.update(threads=1))
    x = example_input(2, 32, seed=7).numpy()
    np.save(tmp_path / "x.npy", x)
    built(infer(programs, engine, folder, tmp_path / "x.npy", "--output", tmp_path / "logits.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), densenet_trt.load(folder)(x).numpy(),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("array, message", [
    (np.zeros((9, 3, 32, 32), np.float32), "batch 9 is outside this engine's range 1..8"),
    (np.zeros((2, 3, 40, 40), np.float32), "input has shape (2, 3, 40, 40); this engine takes (1..8, 3, 32, 32)"),
    (np.zeros((2, 3, 32, 32), np.float64), "holds dtype '<f8', not float32 ('<f4')"),
], ids=["batch", "image-size", "float64"])
def test_input_that_does_not_fit_is_refused(programs, engine, tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    assert message in error_line(infer(programs, engine, engine.path, tmp_path / "x.npy"))


def test_an_engine_without_its_manifest_is_refused(programs, engine, tmp_path):
    np.save(tmp_path / "x.npy", example_input(1, 32).numpy())
    program = PROGRAMS[engine.manifest.backend]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(engine.file, alone)
    line = error_line(infer(programs, engine, alone / engine.file.name, tmp_path / "x.npy"))
    assert line.startswith(f"error: no manifest.json beside {alone / engine.file.name}: {program} reads")
    line = error_line(infer(programs, engine, alone, tmp_path / "x.npy"))
    assert line.startswith(f"error: no manifest.json in {alone}: {program} reads")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_engine_file_that_does_not_load_is_refused(programs, engine, tmp_path, damage):
    folder = shutil.copytree(engine.path, tmp_path / "e")
    data = engine.file.read_bytes()
    (folder / engine.file.name).write_bytes(
        np.random.default_rng(0).bytes(4096) if damage == "garbage" else data[: len(data) // 2])
    np.save(tmp_path / "x.npy", example_input(1, 32).numpy())
    line = error_line(infer(programs, engine, folder, tmp_path / "x.npy"))
    kind = "ONNX" if engine.manifest.backend == "onnxruntime" else "an OpenVINO IR"
    assert line.startswith(f"error: cannot load {folder / engine.file.name} as {kind}: ")


def test_bad_command_lines_print_the_usage(programs, engine):
    program = PROGRAMS[engine.manifest.backend]
    result = infer(programs, engine, "a", "b", "--bogus")
    assert result.returncode == 2 and result.stderr.startswith(f"error: unknown option --bogus\n\nusage: {program} ")
    assert built(infer(programs, engine, "--help")).stdout.startswith(f"usage: {program} ENGINE INPUT.npy")
