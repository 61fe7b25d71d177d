import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

# Blocks of two layers: a few seconds to build, where the model's size does not matter.
SMALL = {"block_config": (2, 2, 2)}


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
    caught by the digest: tests/test_manifest.py)."""
    import json

    from densenet_trt.manifest import DIGEST, MANIFEST, digest

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
    from densenet_trt.build import build

    artifact = build("densenet_bc100_k12", backend="onnxruntime", batch="1:2:4", overrides=SMALL,
                     output=tmp_path_factory.mktemp("shared"), name="e")
    before = _contents(artifact.path)
    yield artifact
    _check_unchanged(artifact.path, before)


@pytest.fixture
def engine_copy(shared_engine, tmp_path):
    """A copy of ``shared_engine`` in this test's ``tmp_path / "e"``, to damage or edit."""
    from densenet_trt.build import Artifact

    return Artifact(shutil.copytree(shared_engine.path, tmp_path / "e"), shared_engine.manifest)


@pytest.fixture(scope="session")
def shared_calibration(tmp_path_factory):
    """One INT8 calibration folder for the whole run (densenet_bc40_k12, 16 synthetic samples,
    the stem kept in float), read only: copy it to change it."""
    pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
    from densenet_trt.quantize import calibrate

    calibration = calibrate("densenet_bc40_k12", data="synthetic", samples=16, batch_size=8, exclude=["stem"],
                            output=tmp_path_factory.mktemp("shared-cal"), name="c")
    before = _contents(calibration.path)
    yield calibration.path
    _check_unchanged(calibration.path, before)
