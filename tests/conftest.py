import importlib.util

import pytest
import torch


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
