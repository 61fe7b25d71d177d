"""The C++ examples (examples/cpp): infer_torchscript and infer_aoti built with CMake against the
installed torch wheel's libtorch, run on small engines built here with the torchscript and
inductor backends, their logits compared with the Python engine's; and their errors.
infer_tensorrt needs TensorRT and a GPU and is not built here."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import densenet_trt
from densenet_trt.engine.capture import example_input

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cpp"
SMALL = {"block_config": (2, 2, 2)}
BATCH = "1:2:4"
PROGRAMS = {"torchscript": "infer_torchscript", "inductor": "infer_aoti"}


def run(command, **kwargs):
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)


def check(result):
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="session")
def programs(tmp_path_factory):
    """The two libtorch programs, configured and built once per session."""
    cmake = shutil.which("cmake")
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cmake is None or compiler is None:
        pytest.skip(f"building the C++ examples needs cmake and a C++ compiler; missing: "
                    f"{', '.join(n for n, p in (('cmake', cmake), ('c++', compiler)) if p is None)}")
    build = tmp_path_factory.mktemp("cpp-build")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    check(run([cmake, "-S", EXAMPLES, "-B", build, *generator, "-DCMAKE_BUILD_TYPE=Release",
               f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]))
    check(run([cmake, "--build", build, "-j2", "--target", *PROGRAMS.values()]))
    return {backend: build / program for backend, program in PROGRAMS.items()}


@pytest.fixture(scope="session", params=list(PROGRAMS))
def engine(request, tmp_path_factory):
    """A small fp32 engine of the backend, batch 1 to 4, 32x32 (built once per session)."""
    return densenet_trt.build("densenet_bc100_k12", backend=request.param, batch=BATCH,
                              output=tmp_path_factory.mktemp(request.param), overrides=SMALL)


def infer(programs, engine, *args):
    return run([programs[engine.manifest.backend], *args])


def error_line(result):
    """The one line a failing program prints on stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("batch", [1, 3])
def test_logits_equal_the_python_engines(programs, engine, batch, tmp_path):
    x = example_input(batch, 32, seed=100 + batch).numpy()
    np.save(tmp_path / "x.npy", x)
    result = check(infer(programs, engine, engine.file, tmp_path / "x.npy", "--output", tmp_path / "logits.npy"))
    logits = np.load(tmp_path / "logits.npy")
    expected = densenet_trt.load(engine.path)(x).numpy()
    assert logits.dtype == np.float32 and logits.shape == (batch, 10)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)

    # The printed top-5: the classes in order of the logits, with their softmax probabilities.
    lines = result.stdout.splitlines()
    assert lines[0] == "top-5 classes (softmax probability) per sample:"
    probabilities = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    for n, line in enumerate(lines[1:]):
        label, _, rest = line.partition(": ")
        assert label == f"sample {n}"
        fields = rest.split()
        classes = [int(c) for c in fields[0::2]]
        printed = [float(p.strip("()")) for p in fields[1::2]]
        assert classes == list(np.argsort(-logits[n], kind="stable")[:5])
        np.testing.assert_allclose(printed, probabilities[n, classes], rtol=0, atol=2e-6)
    assert len(lines) == batch + 1


def test_top_k(programs, engine, tmp_path):
    np.save(tmp_path / "x.npy", example_input(2, 32).numpy())
    result = check(infer(programs, engine, engine.file, tmp_path / "x.npy", "--top-k", "3"))
    assert [len(line.split()) for line in result.stdout.splitlines()[1:]] == [2 + 2 * 3] * 2
    result = check(infer(programs, engine, engine.file, tmp_path / "x.npy", "--top-k", "20"))
    assert result.stdout.splitlines()[0].startswith("top-10 classes")


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3, 40, 40), np.float32), "input has shape (2, 3, 40, 40); this engine takes (1..4, 3, 32, 32)"),
    (np.zeros((2, 1, 32, 32), np.float32), "input has shape (2, 1, 32, 32); this engine takes (1..4, 3, 32, 32)"),
    (np.zeros((5, 3, 32, 32), np.float32), "batch 5 is outside this engine's range 1..4"),
    (np.zeros((2, 3, 32, 32), np.float64), "holds dtype '<f8', not float32 ('<f4')"),
    (np.zeros((3, 32, 32), np.float32), "has shape (3, 32, 32); the engines take images of shape (N, C, H, W)"),
    (np.asfortranarray(np.zeros((2, 3, 32, 32), np.float32)), "is in Fortran order"),
], ids=["image-size", "channels", "batch", "float64", "3-d", "fortran"])
def test_input_that_does_not_fit_is_refused(programs, engine, tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    assert message in error_line(infer(programs, engine, engine.file, tmp_path / "x.npy"))


def test_input_files_that_are_not_npy_arrays_are_refused(programs, engine, tmp_path):
    np.save(tmp_path / "x.npy", example_input(2, 32).numpy())
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(data[:-100])
    (tmp_path / "text.npy").write_text("not an array")
    size = 2 * 3 * 32 * 32 * 4
    line = error_line(infer(programs, engine, engine.file, tmp_path / "truncated.npy"))
    assert line.endswith(f"holds {size - 100} bytes of data; shape (2, 3, 32, 32) needs {size}")
    line = error_line(infer(programs, engine, engine.file, tmp_path / "text.npy"))
    assert line == f"error: {tmp_path / 'text.npy'} is not a .npy file (write it with numpy.save)"


def test_missing_files_are_refused(programs, engine, tmp_path):
    np.save(tmp_path / "x.npy", example_input(1, 32).numpy())
    line = error_line(infer(programs, engine, tmp_path / "none" / engine.file.name, tmp_path / "x.npy"))
    assert line == f"error: engine {tmp_path / 'none' / engine.file.name}: no such file"
    line = error_line(infer(programs, engine, engine.file, tmp_path / "none.npy"))
    assert line == f"error: input {tmp_path / 'none.npy'}: no such file"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_engine_file_that_does_not_load_is_refused(programs, engine, tmp_path, damage):
    folder = tmp_path / "engine"
    shutil.copytree(engine.path, folder)
    data = engine.file.read_bytes()
    (folder / engine.file.name).write_bytes(
        np.random.default_rng(0).bytes(4096) if damage == "garbage" else data[: len(data) // 2])
    np.save(tmp_path / "x.npy", example_input(1, 32).numpy())
    line = error_line(infer(programs, engine, folder / engine.file.name, tmp_path / "x.npy"))
    kind = "TorchScript" if engine.manifest.backend == "torchscript" else "an AOTInductor package"
    assert line.startswith(f"error: cannot load {folder / engine.file.name} as {kind}: ")


def test_without_its_manifest(programs, engine, tmp_path):
    """A bare .ts runs (as exported ones do), its runtime errors naming the input's shape; a bare
    .pt2 is refused, as AOTInductor's code does not check the shape of its input."""
    shutil.copy(engine.file, tmp_path)
    bare = tmp_path / engine.file.name
    x = example_input(2, 32, seed=5).numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c1.npy", x[:, :1])
    if engine.manifest.backend == "torchscript":
        check(infer(programs, engine, bare, tmp_path / "x.npy", "--output", tmp_path / "logits.npy"))
        np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), densenet_trt.load(engine.path)(x).numpy(),
                                   rtol=0, atol=1e-4)
        line = error_line(infer(programs, engine, bare, tmp_path / "c1.npy"))
        assert line.startswith("error: the engine cannot run input of shape (2, 1, 32, 32): RuntimeError: ")
        assert "to have 3 channels, but got 1 channels instead" in line
    else:
        line = error_line(infer(programs, engine, bare, tmp_path / "x.npy"))
        assert line.startswith(f"error: no manifest.json beside {bare}")


def test_bad_command_lines_print_the_usage(programs, engine):
    program = PROGRAMS[engine.manifest.backend]
    for args, message in [
        ([], "expected ENGINE and INPUT.npy, got 0 arguments"),
        (["a", "b", "--top-k", "0"], "--top-k takes a positive integer, got '0'"),
        (["a", "b", "--top-k"], "--top-k needs a value"),
        (["a", "b", "--bogus"], "unknown option --bogus"),
    ]:
        result = infer(programs, engine, *args)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {message}\n\nusage: {program} ")
    result = check(infer(programs, engine, "--help"))
    assert result.stdout.startswith(f"usage: {program} ")
