"""Every CPU backend x every precision it has here, on a small preset: build, load, compare
with eager, batch sizes across the range, bad input; manifests and the accuracy gate."""

import json
import re
import time

import numpy as np
import pytest
import torch

import densenet_trt
from densenet_trt import DenseNetTRTError
from densenet_trt.backends import BACKENDS, choose_backend
from densenet_trt.backends.base import Runtime
from densenet_trt.engine.build import build, verify_engine
from densenet_trt.engine.load import compatibility, load
from densenet_trt.engine.capture import example_input
from densenet_trt.engine.memory import machine_memory, parameter_count
from densenet_trt.model.network import DenseNet, count_parameters
from densenet_trt.model.registry import create_model, list_models, model_config
from densenet_trt.machine import MAX_THREADS
from densenet_trt.engine.spec import Precision
from densenet_trt.engine.verify import compare
from helpers import small_engine_param

SMALL = {"block_config": (2, 2, 2)}
FAST = "torchscript"  # the backend that builds fastest (no graph capture): for tests of the build's logic
# int8 engines need a calibration: tests/int8/test_quantize.py and tests/int8/test_int8_digits.py.
CPU_CASES = [
    (b, p) for b in ("onnxruntime", "openvino", "torchscript", "inductor")
    if BACKENDS[b].available().ok for p in BACKENDS[b].precisions("cpu") if p != "int8"
]


def small_build(tmp, backend="onnxruntime", precision="fp32", **kwargs):
    """A small engine in ``tmp``; tests of the build's own logic (force, the gate, checkpoints) pass
    ``backend=FAST``: it builds in 0.4 s where onnxruntime's graph capture takes 4."""
    kwargs.setdefault("batch", "1:4:8")
    return build("densenet_bc100_k12", backend=backend, precision=precision, output=tmp,
                 overrides=SMALL, **kwargs)


@pytest.fixture(scope="module", params=[small_engine_param(b, p) for b, p in CPU_CASES])
def built(request, small_engine):
    return small_engine(*request.param)  # small_build's engine, shared with tests/deploy/test_triton.py


@pytest.fixture(scope="module")
def eager():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model("densenet_bc100_k12", **SMALL)


def test_every_cpu_backend_and_precision_builds_an_engine_that_matches_eager(built, eager):
    m = built.manifest
    assert m.accuracy.verified and m.accuracy.passed
    assert [r["batch"] for r in m.accuracy.results] == [1, 4, 8]
    engine = load(built.path)
    tol = m.precision.tolerance
    for n in (1, 3, 8):  # inside the range, also sizes the gate did not use
        x = example_input(n, 32, seed=50 + n)
        with torch.no_grad():
            cmp = compare(eager(x), engine(x), tol)
        assert cmp.passes(), (n, str(cmp))
    out = engine(x.numpy())  # numpy in, the same logits out
    assert out.dtype == torch.float32 and out.shape == (8, 10)


def test_inputs_the_engine_was_not_built_for_are_refused(built):
    engine = load(built.path)
    for bad, message in [
        (torch.zeros(9, 3, 32, 32), "batch 9 is outside this engine's batch range 1:4:8"),
        (torch.zeros(2, 1, 32, 32), r"shape \(2, 1, 32, 32\); this engine takes \(N, 3, 32, 32\)"),
        (torch.zeros(2, 3, 64, 64), "this engine takes"),
        (torch.zeros(3, 32, 32), "this engine takes"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.float64), "dtype is float64; this engine takes float32"),
        (np.zeros((2, 3, 32, 32), np.float16), "dtype is float16"),
        ([1, 2], "torch.Tensor or numpy array"),
    ]:
        with pytest.raises(DenseNetTRTError, match=message):
            engine(bad)


def test_manifest_records_what_was_built(built):
    m = json.loads((built.path / "manifest.json").read_text())
    assert {k: v for k, v in m.items() if k not in ("schema", "schema_version", "digest")} == built.manifest.to_json()
    assert m["schema"] == "densenet-trt/engine" and m["schema_version"] == 5
    assert m["model"]["name"] == "densenet_bc100_k12" and m["model"]["weights"] is None
    assert m["model"]["config"]["block_config"] == [2, 2, 2]
    assert m["batch"] == {"min": 1, "opt": 4, "max": 8} and m["image_size"] == 32
    io = {"openvino": "float32"}.get(m["backend"], built.manifest.precision.dtype_name)  # OpenVINO: a hint
    assert m["input"] == {"name": "input", "dtype": io, "shape": ["batch", 3, 32, 32]}
    assert m["output"]["dtype"] == io
    assert m["output"]["shape"] == ["batch", 10]
    assert m["versions"]["torch"] == torch.__version__ and m["versions"]["densenet-trt"]
    assert m["device"]["type"] == "cpu" and m["device"]["cpu"]
    assert set(m["files"]) == {p.name for p in built.path.iterdir()} - {"manifest.json"}
    assert built.file.is_file() and m["build"]["seconds"] > 0


def test_verify_makes_the_random_weights_again(built):
    verification = verify_engine(built.path, 10, seed=123)
    assert verification.passed and verification.inputs >= 10
    assert sum(n for n, _ in verification.results) == verification.inputs


def test_verify_says_a_line_per_batch_size_not_per_batch(shared_engine):
    """65 samples on an engine whose opt batch is 2: 32 batches of 2 and one of 1, two lines."""
    lines = []
    verification = verify_engine(shared_engine.path, 65, seed=1, progress=lines.append)
    assert verification.passed and len(verification.results) == 33
    assert lines[0] == "comparing 65 distinct inputs (seed 1) with eager float32 PyTorch" and len(lines) == 3, lines
    assert lines[1].startswith("  batch 1, 1 batch: within the tolerance; it: max abs ")
    assert lines[2].startswith("  batch 2, 32 batches: within the tolerance; the worst: max abs ")
    assert lines[2].endswith(" over 2 samples")


def test_auto_picks_tensorrt_only_with_a_gpu_else_the_fastest_cpu_backend(monkeypatch):
    backend, device, reason = choose_backend("fp32")
    assert device == "cpu" and "no TensorRT" in reason
    assert backend.name == next(b for b in ("onnxruntime", "openvino", "inductor", "torchscript")
                                if BACKENDS[b].available().ok)
    unavailable = densenet_trt.backends.Availability(False, "not installed", "pip install x")
    monkeypatch.setattr(BACKENDS["onnxruntime"], "available", lambda: unavailable)
    backend, _, reason = choose_backend("fp32")
    assert backend.name != "onnxruntime" and "onnxruntime (not installed)" in reason


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backend="tvm"), "unknown backend 'tvm'; choose auto or one of tensorrt"),
        (dict(backend="onnxruntime", precision="bf16"), "onnxruntime cannot do bf16 on this cpu; it can do fp32, int8"),
        (dict(backend="torchscript", precision="fp16"), "torchscript cannot do fp16 on this cpu; it can do fp32, bf16"),
        (dict(precision="int8"), "int8 needs a calibration: make one with `densenet-trt calibrate"),
        (dict(calibration="somewhere"), "calibration is for precision int8, not fp32"),
        (dict(precision="int8", calibration="nowhere"), "nowhere is not a calibration folder"),
        (dict(precision="fp64"), "unknown precision"),
        (dict(format="engine"), "onnxruntime has no format 'engine'; it writes onnx"),
        (dict(batch="4:2:8"), "1 <= min <= opt <= max"),
        (dict(image_size=3), "image size 3 is too small"),
        (dict(threads=0), f"threads must be an integer from 1 to {MAX_THREADS}"),
        (dict(device="cuda"), "cannot run on cuda here"),
    ],
)
def test_bad_build_requests_write_nothing(tmp_path, kwargs, message):
    with pytest.raises(DenseNetTRTError, match=message):
        small_build(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_without_gpu_or_package_says_how_to_fix(tmp_path):
    if BACKENDS["tensorrt"].available().ok:
        pytest.skip("TensorRT is usable here")
    with pytest.raises(DenseNetTRTError, match="backend tensorrt is not available: "):
        small_build(tmp_path, backend="tensorrt")
    assert list(tmp_path.iterdir()) == []


def test_existing_engine_needs_force_and_force_replaces_it(engine_copy, tmp_path):
    first = engine_copy  # tmp_path / "e", batch 1:2:4
    with pytest.raises(DenseNetTRTError, match="exists; pass force=True"):
        small_build(tmp_path, batch="2", name="e", backend=FAST)
    assert load(first.path).batch.max == 4
    second = small_build(tmp_path, batch="3", name="e", force=True, backend=FAST)
    assert second.path == first.path and load(second.path).batch.max == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DenseNetTRTError, match="cannot write in folder .*engines' \\(.*file is a file, not a folder\\); "
                                               "give another output=DIR"):
        small_build(tmp_path / "file" / "engines")


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(BACKENDS["onnxruntime"], "build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_build(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_accuracy_gate_refuses_a_wrong_engine_and_no_verify_keeps_it(tmp_path, monkeypatch):
    backend = BACKENDS[FAST]
    real_load = backend.load

    def perturbed(folder, manifest):
        runtime = real_load(folder, manifest)
        return Runtime(folder, manifest, lambda x: runtime.run(x) + 0.01)

    monkeypatch.setattr(backend, "load", perturbed)
    with pytest.raises(DenseNetTRTError, match="differs from eager PyTorch beyond the fp32 tolerance at batch 1"):
        small_build(tmp_path, backend=FAST)
    assert list(tmp_path.iterdir()) == []
    kept = small_build(tmp_path, verify=False, backend=FAST)
    assert not kept.manifest.accuracy.verified and kept.manifest.accuracy.reason == "built with verify=False"


def test_corrupt_truncated_or_missing_files_are_refused_at_load(engine_copy):
    onnx_file = engine_copy.file
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(DenseNetTRTError, match="does not match its recorded sha256"):
        load(engine_copy.path)
    manifest, problem = compatibility(engine_copy.path)
    assert manifest.backend == "onnxruntime" and "sha256" in problem
    onnx_file.unlink()
    with pytest.raises(DenseNetTRTError, match="model.onnx is missing"):
        load(engine_copy.path)


def test_version_3_and_4_manifests_are_still_read(engine_copy, edit_manifest):
    """Version 4 added calibration.synthetic and version 5 labels: older manifests, which have
    no labels field, read with them not recorded."""
    manifest_path = engine_copy.path / "manifest.json"
    edit_manifest(engine_copy.path, lambda m: m.pop("labels"))
    for version in (4, 3):
        text = manifest_path.read_text()
        manifest_path.write_text(re.sub(r'"schema_version": \d+', f'"schema_version": {version}', text))
        assert load(engine_copy.path).manifest == engine_copy.manifest
    manifest_path.write_text(manifest_path.read_text().replace('"schema_version": 3', '"schema_version": 5'))
    with pytest.raises(DenseNetTRTError, match="field labels is missing"):
        load(engine_copy.path)


def test_a_gate_with_no_decisive_sample_says_top1_was_not_checked():
    """Random weights give near-flat logits: no sample is decisive, and the gate printed `top-1
    agreement 100.0% (100.0% of 0 decisive)` and the manifest a decisive_top1 of 1.0 (issue 23)."""
    reference = torch.zeros(4, 10)
    reference[:, 3] = 1e-6
    c = compare(reference, reference.clone(), Precision.FP32.tolerance)
    assert c.decisive == 0 and c.decisive_top1 is None and c.passes()
    assert "top-1 not checked (0 of 4 samples decisive) over 4 samples" in str(c) and "%" not in str(c)
    assert c.as_dict()["decisive_top1"] is None
    repeated = compare(reference, reference, Precision.FP32.tolerance, distinct_inputs=2)
    assert str(repeated).endswith("over 4 samples (2 distinct inputs, repeated)")


def test_bad_manifests_are_refused(engine_copy):
    manifest_path = engine_copy.path / "manifest.json"
    good = manifest_path.read_text()
    manifest_path.write_text(good[:50])
    with pytest.raises(DenseNetTRTError, match="is corrupt"):
        load(engine_copy.path)
    manifest_path.write_text(good.replace('"schema_version": 5', '"schema_version": 99'))
    with pytest.raises(DenseNetTRTError, match="schema version 99; this densenet-trt reads version 5"):
        load(engine_copy.path)
    manifest_path.unlink()
    with pytest.raises(DenseNetTRTError, match="has no manifest.json"):
        load(engine_copy.file)
    with pytest.raises(DenseNetTRTError, match="does not exist"):
        load(engine_copy.path / "nope")


def test_verify_with_a_checkpoint_that_moved(tmp_path):
    weights = tmp_path / "w.pth"
    with torch.random.fork_rng():
        torch.manual_seed(5)
        torch.save(create_model("densenet_bc100_k12", **SMALL).state_dict(), weights)
    artifact = small_build(tmp_path / "engines", batch="2", weights=weights, backend=FAST)
    assert artifact.manifest.model.weights.sha256
    moved = tmp_path / "moved.pth"
    weights.rename(moved)
    with pytest.raises(DenseNetTRTError, match="is not there: pass the checkpoint's path as weights=PATH"):
        verify_engine(artifact.path, 4)
    assert all(c.passes() for _, c in verify_engine(artifact.path, 4, weights=moved).results)
    torch.save(create_model("densenet_bc100_k12", **SMALL).state_dict(), weights)
    with pytest.raises(DenseNetTRTError, match="not the checkpoint this engine was built from"):
        verify_engine(artifact.path, 4, weights=weights)


def test_load_threads_override(engine_copy):
    assert load(engine_copy.path, threads=1).manifest.threads == 1


def test_a_checkpoint_that_does_not_fit_creates_no_output_folder(tmp_path):
    torch.save(create_model("densenet40_k12").state_dict(), tmp_path / "w.pth")
    with pytest.raises(DenseNetTRTError, match="does not fit this model"):
        small_build(tmp_path / "engines", weights=tmp_path / "w.pth")
    assert not (tmp_path / "engines").exists()


# --- memory (densenet_trt/engine/memory.py) ----------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"batch": "1:1:100000"}, {"image_size": 100000}, {"num_classes": 10**9}])
def test_builds_that_cannot_fit_in_memory_are_refused_at_once(tmp_path, kwargs):
    start = time.perf_counter()
    with pytest.raises(DenseNetTRTError, match=r"this build needs about [\d,.]+ GiB of memory \(.*\) but this machine "
                                               r"has [\d,.]+ GiB; use a smaller batch=MIN:OPT:MAX, image_size=N or "
                                               r"num_classes=N$"):
        build("densenet_bc40_k12", backend="onnxruntime", output=tmp_path / "engines", **kwargs)
    assert time.perf_counter() - start < 0.5
    assert not (tmp_path / "engines").exists()


def test_the_memory_estimate_counts_every_parameter_without_making_the_model():
    assert 1 << 30 < machine_memory() < 1 << 50
    for name in list_models():
        # Each preset whole, then each variant on two short blocks (the same formula, a tenth of the layers).
        for overrides in ({}, {"block_config": (2, 3)}, {"bn_size": 0, "block_config": (2, 3)},
                          {"compression": 1.0, "in_channels": 1, "num_classes": 7, "block_config": (3, 2)}):
            config = model_config(name, **overrides)
            with torch.device("meta"):
                assert parameter_count(config) == count_parameters(DenseNet(**config)), (name, overrides)


# --- the accuracy gate on outputs that are not finite -------------------------------------------


def test_non_finite_outputs_are_said_to_be_so_not_blamed_on_the_engine(tmp_path):
    state = create_model("densenet_bc100_k12", **SMALL).state_dict()
    state["classifier.weight"][:] = 3e38  # finite, as a checkpoint must be; the logits overflow float32
    torch.save(state, tmp_path / "big.pth")
    with pytest.raises(DenseNetTRTError, match=r"^eager float32 PyTorch and the fp32 engine gave non-finite outputs "
                                               r"\(NaN or Inf\) at batch 1 on the random inputs: non-finite inputs or "
                                               r"weights, or values beyond float32's range, are the likely cause") as error:
        small_build(tmp_path / "engines", weights=tmp_path / "big.pth", backend=FAST)
    assert "differs from" not in str(error.value)
    assert list((tmp_path / "engines").iterdir()) == []
