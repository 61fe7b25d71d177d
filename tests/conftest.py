import importlib.util

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; this machine has none")
    # Installed is not enough: where TensorRT's libraries are missing, the import fails.
    trt_failure = "torch-tensorrt is not installed (pip install 'densenet-trt[tensorrt]')"
    if importlib.util.find_spec("torch_tensorrt") is not None:
        from densenet_trt.backends.tensorrt import import_failure

        trt_failure = import_failure("torch_tensorrt") and f"import torch_tensorrt fails: {import_failure('torch_tensorrt')}"
    no_trt = pytest.mark.skip(reason=trt_failure or "")
    has_trt = not trt_failure
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(no_trt)


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
