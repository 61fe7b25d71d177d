import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

# Blocks of two layers: a few seconds to build, where the model's size does not matter.
SMALL = {"block_config": (2, 2, 2)}
ROOT = Path(__file__).resolve().parents[1]
# The digits DenseNet-BC (trained by examples/digits/train.py) and its preset.
DIGITS_CHECKPOINT = ROOT / "tests" / "data" / "digits_densenet_bc40_k12.pth"
DIGITS_MODEL = "densenet_bc40_k12"


def import_failure(module: str) -> str:
    """Why ``import module`` fails here ("" when it works), tried in a subprocess: installed is
    not enough where TensorRT's libraries are missing."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    from densenet_trt.backends.tensorrt import import_failure as probe

    return probe(module) and f"import {module} fails: {probe(module)}"


def pytest_collection_modifyitems(config, items):
    """``gpu``: skipped without CUDA. ``tensorrt``: skipped where its module (torch_tensorrt;
    ``tensorrt(module="tensorrt")`` for TensorRT's own Python API) does not import."""
    no_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; this machine has none")
    failures = {}
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        marker = item.get_closest_marker("tensorrt")
        if marker is not None:
            module = marker.kwargs.get("module", "torch_tensorrt")
            if module not in failures:
                failures[module] = import_failure(module)
            if failures[module]:
                item.add_marker(pytest.mark.skip(reason=failures[module]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def edit_manifest():
    """``edit(folder, change)``: apply ``change`` to the engine manifest's JSON in ``folder``
    and write it back with its digest made again, as a deliberate edit (an accidental one is
    caught by the digest: tests/engine/test_manifest.py)."""
    import json

    from densenet_trt.engine.manifest import DIGEST, MANIFEST, digest

    def edit(folder, change):
        path = folder / MANIFEST
        data = json.loads(path.read_text())
        change(data)
        data[DIGEST] = digest({k: v for k, v in data.items() if k not in ("schema", "schema_version", DIGEST)})
        path.write_text(json.dumps(data))

    return edit


def _contents(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_unchanged(folder: Path, before: dict[str, str]) -> None:
    """A test that changed a shared folder (instead of a copy, ``shutil.copytree`` to its
    ``tmp_path``) is an error when the session ends."""
    if _contents(folder) != before:
        pytest.fail(f"a test changed the shared folder {folder}; change a copy of it instead")


@pytest.fixture(scope="session")
def shared_engine(tmp_path_factory):
    """One small random-weight engine for the whole run, built once: ONNX Runtime fp32,
    densenet_bc100_k12 cut to blocks of two layers, batch 1:2:4, 32x32, folder ``e``. Read it;
    to change it, change ``engine_copy``."""
    from densenet_trt.engine.build import build

    artifact = build("densenet_bc100_k12", backend="onnxruntime", batch="1:2:4", overrides=SMALL,
                     output=tmp_path_factory.mktemp("shared"), name="e")
    before = _contents(artifact.path)
    yield artifact
    _check_unchanged(artifact.path, before)


@pytest.fixture
def engine_copy(shared_engine, tmp_path):
    """A copy of ``shared_engine`` in this test's ``tmp_path / "e"``, to damage or edit."""
    from densenet_trt.engine.build import Artifact

    return Artifact(shutil.copytree(shared_engine.path, tmp_path / "e"), shared_engine.manifest)


class _BuiltOnce:
    """``built(*key)``: what ``make(*key)`` builds (an ``Artifact``), made on first use and
    then shared for the run; ``check()`` fails where a test changed one."""

    def __init__(self, make):
        self.make, self.built, self.before = make, {}, {}

    def __call__(self, *key):
        if key not in self.built:
            self.built[key] = self.make(*key)
            self.before[key] = _contents(self.built[key].path)
        return self.built[key]

    def check(self):
        for key, artifact in self.built.items():
            _check_unchanged(artifact.path, self.before[key])


@pytest.fixture(scope="session")
def small_engine(tmp_path_factory):
    """``small_engine(backend, precision)``: a random-weight engine of densenet_bc100_k12 cut to
    blocks of two layers, batch 1:4:8, 32x32, built once per run for each backend and precision
    (tests/engine/test_build.py checks each, tests/deploy/test_triton.py exports each). Read it; copy it to
    change it."""
    from densenet_trt.engine.build import build

    output = tmp_path_factory.mktemp("small")
    engines = _BuiltOnce(lambda backend, precision: build(
        "densenet_bc100_k12", backend=backend, precision=precision, batch="1:4:8", overrides=SMALL,
        output=output / f"{backend}-{precision}"))
    yield engines
    engines.check()


@pytest.fixture(scope="session")
def shared_calibration(tmp_path_factory):
    """One INT8 calibration folder for the whole run (densenet_bc40_k12, max, 32 synthetic
    samples in batches of 16, the stem kept in float: tests/int8/test_quantize.py checks it), read
    only: copy it to change it."""
    pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
    from densenet_trt.int8.quantize import calibrate

    calibration = calibrate("densenet_bc40_k12", data="synthetic", samples=32, batch_size=16, exclude=["stem"],
                            output=tmp_path_factory.mktemp("shared-cal"), name="c")
    before = _contents(calibration.path)
    yield calibration.path
    _check_unchanged(calibration.path, before)


@pytest.fixture(scope="session")
def small_int8_engine(tmp_path_factory, shared_calibration):
    """``small_int8_engine(backend)``: densenet_bc40_k12's int8 engine on ``backend`` from
    ``shared_calibration``, batch 1:4:8, built once per run without the accuracy gate or the
    speed check (the int8 gate: tests/int8/test_int8_digits.py; the speed check: tests/int8/test_int8_speed.py);
    the test is skipped, saying why, where ``backend`` is not available. Read it; copy it to change it."""
    from densenet_trt.backends import BACKENDS
    from densenet_trt.engine.build import build

    output = tmp_path_factory.mktemp("small-int8")

    def make(backend):
        if not BACKENDS[backend].available().ok:
            pytest.skip(BACKENDS[backend].available().message(backend))
        return build("densenet_bc40_k12", backend=backend, precision="int8", calibration=shared_calibration,
                     batch="1:4:8", verify=False, speed_check=False, output=output, name=backend)

    engines = _BuiltOnce(make)
    yield engines
    engines.check()


def _digits():
    """examples/digits/digits.py, the digits' splits and preprocessing."""
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    if str(ROOT / "examples" / "digits") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples" / "digits"))
    import digits

    return digits


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory):
    """A folder with the digits' ``calibration.npz`` (300 images) and ``test.npz`` (400), the
    splits of examples/digits/digits.py."""
    write_npz = _digits().write_npz

    folder = tmp_path_factory.mktemp("digits")
    for split in ("calibration", "test"):
        write_npz(split, str(folder / f"{split}.npz"))
    return folder


@pytest.fixture(scope="session")
def digits_calibration(digits_data, tmp_path_factory):
    """The digits model's calibration, made by ``calibrate`` on the command line: max, 300
    samples, the stem kept in float, judged on the 400 test images. Read only."""
    pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
    from click.testing import CliRunner

    from densenet_trt.cli import main

    output = tmp_path_factory.mktemp("digits-cal")
    result = CliRunner().invoke(main, [
        "calibrate", "--model", DIGITS_MODEL, "--weights", str(DIGITS_CHECKPOINT),
        "--data", str(digits_data / "calibration.npz"), "--eval-data", str(digits_data / "test.npz"),
        "--samples", "300", "--batch-size", "50",
        # OpenVINO's INT8 stem convolution strays from ModelOpt's (docs/calibrate.md, INT8 accuracy).
        "--exclude", "stem", "--output", str(output), "--name", "max", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert "top-1 on 400 held-out" in result.output
    before = _contents(output / "max")
    yield output / "max"
    _check_unchanged(output / "max", before)


def _digits_engines(output: Path, precision: str, calibration: Path | None = None, preprocess=None) -> _BuiltOnce:
    from densenet_trt.engine.build import build

    return _BuiltOnce(lambda backend: build(
        DIGITS_MODEL, weights=DIGITS_CHECKPOINT, backend=backend, precision=precision, calibration=calibration,
        batch="1:100:100", output=output, name=f"{backend}-{precision}", preprocess=preprocess,
        speed_check=False))


@pytest.fixture(scope="session")
def digits_fp32_engine(tmp_path_factory):
    """``digits_fp32_engine(backend)``: the digits model's float32 engine on ``backend`` with the
    digits' grayscale preprocessing, batch 1:100:100, built once per run. Read it; copy it to
    change it."""
    from densenet_trt.model.data import Preprocessing

    digits = _digits()
    steps = Preprocessing(resize=digits.IMAGE_SIZE, crop=digits.IMAGE_SIZE, mean=(digits.MEAN,), std=(digits.STD,))
    engines = _digits_engines(tmp_path_factory.mktemp("digits-fp32"), "fp32", preprocess=steps)
    yield engines
    engines.check()


@pytest.fixture(scope="session")
def digits_int8_engine(tmp_path_factory, digits_calibration):
    """``digits_int8_engine(backend)``: the digits model's int8 engine on ``backend`` from
    ``digits_calibration``, batch 1:100:100, built once per run. Read it; copy it to change it."""
    engines = _digits_engines(tmp_path_factory.mktemp("digits-int8"), "int8", digits_calibration)
    yield engines
    engines.check()
