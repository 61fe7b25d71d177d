"""Backend tensorrt-onnx (TensorRT's own ONNX parser and builder, TensorRT 10.x and 11.x).

On the CPU: the decisions (which flags for which TensorRT major and precision, the optimization
profile, DLA settings, availability, what the manifest records, the command line's refusals),
and the TensorRT API the backend calls, checked against TensorRT's Python binding sources of
10.3 (JetPack 6) and 11.1 (``helpers.tensorrt_source``: pinned commits, downloaded once into the
cache, or read from a git copy given as TENSORRT_GIT; skipped, saying why, where neither works).
No tensorrt module is faked. The engine tests need an NVIDIA GPU and the tensorrt module."""

import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from helpers import tensorrt_source

from densenet_trt import DenseNetTRTError, create_model
from densenet_trt.backends import BACKENDS, choose_backend
from densenet_trt.backends._trt_api import (
    check_dla,
    check_dla_batch,
    in_flight_refusal,
    kept_cache,
    placement,
    profile_shapes,
    torch_dtype,
)
from densenet_trt.backends.tensorrt_onnx import (
    FILE,
    OnnxTensorRTBackend,
    OnnxTensorRTSettings,
    availability,
    probe,
    recipe,
    recorded_dla,
    timing_cache_file,
    unsupported_reason,
)
from densenet_trt.engine.capture import example_input
from densenet_trt.cli import as_flags, main
from densenet_trt.engine.load import load
from densenet_trt.engine.spec import BatchRange, BuildSpec, Precision
from densenet_trt.engine.verify import compare

SMALL = {"block_config": (2, 2, 2)}
FP32, FP16, BF16, INT8 = Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8


def spec(precision="fp32", batch="1:2:4", **kwargs):
    return BuildSpec(precision=precision, batch=BatchRange.parse(batch), image_size=32, **kwargs)


# --- the version -> flags decision ---------------------------------------------------------------


def test_tensorrt_10_builds_fp16_and_int8_with_its_builder_flags_over_a_float32_onnx():
    fp32, fp16, int8 = (recipe(10, p) for p in (FP32, FP16, INT8))
    assert [r.builder_flags for r in (fp32, fp16, int8)] == [(), ("FP16",), ("INT8",)]
    assert {r.onnx_dtype for r in (fp32, fp16, int8)} == {torch.float32}
    assert not any(r.strongly_typed for r in (fp32, fp16, int8))
    assert fp16.half_io and not fp32.half_io and not int8.half_io  # float16 bindings, as the manifest says


def test_tensorrt_11_is_strongly_typed_fp16_from_a_float16_onnx_and_no_precision_flags():
    fp32, fp16, int8 = (recipe(11, p) for p in (FP32, FP16, INT8))
    assert all(r.strongly_typed and r.builder_flags == () and not r.half_io for r in (fp32, fp16, int8))
    assert (fp32.onnx_dtype, fp16.onnx_dtype, int8.onnx_dtype) == (torch.float32, torch.float16, torch.float32)


@pytest.mark.parametrize("major", [10, 11])
def test_tf32_is_cleared_unless_allowed(major):
    assert recipe(major, FP32).cleared_flags == ("TF32",)
    assert recipe(major, FP32, allow_tf32=True).cleared_flags == ()


@pytest.mark.parametrize("major", [10, 11])
def test_dla_adds_gpu_fallback_unless_refused_and_never_runs_fp32(major):
    assert "GPU_FALLBACK" in recipe(major, FP16, dla=True).builder_flags
    assert "GPU_FALLBACK" not in recipe(major, FP16, dla=True, gpu_fallback=False).builder_flags
    assert "GPU_FALLBACK" not in recipe(major, INT8).builder_flags
    with pytest.raises(DenseNetTRTError, match="DLA runs fp16 and int8 engines only"):
        recipe(major, FP32, dla=True)


def test_other_majors_and_bf16_are_refused():
    for major in (8, 9, 12):
        with pytest.raises(DenseNetTRTError, match="supports TensorRT 10.x and 11.x only"):
            recipe(major, FP32)
    with pytest.raises(DenseNetTRTError, match="does not build bf16"):
        recipe(11, BF16)
    assert unsupported_reason("10.3.0") == unsupported_reason("11.1.0.106") == ""
    assert "TensorRT 8.6.1 is installed" in unsupported_reason("8.6.1")


def test_the_precisions_it_builds_are_those_the_table_gives_it():
    assert [p for p in Precision if "tensorrt-onnx" in p.backends] == [FP32, FP16, INT8]


# --- profile, settings, DLA -------------------------------------------------------------------------


def test_the_optimization_profile_is_the_batch_range():
    assert profile_shapes(BatchRange(1, 8, 32), 3, 224) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert profile_shapes(BatchRange.parse("4"), 1, 28) == ((4, 1, 28, 28),) * 3


def test_settings_defaults_and_refusals():
    assert OnnxTensorRTSettings.from_options({}) == OnnxTensorRTSettings()
    assert OnnxTensorRTSettings().gpu_fallback and OnnxTensorRTSettings().dla_core is None
    for options, message in [
        ({"dla_core": -1}, "dla_core must be an integer of at least 0"),
        ({"dla_core": True}, "dla_core must be an integer"),
        ({"dla_core": "0"}, "dla_core must be an integer"),
        ({"optimization_level": 6}, "optimization_level must be an integer from 0 to 5"),
        ({"workspace_size": 0}, "workspace_size must be an integer of at least 1"),
        ({"timing_cache_path": ""}, "timing_cache_path must be a file path"),
        ({"allow_tf32": 1}, "allow_tf32 must be true or false"),
        ({"gpu_fallback": False}, "gpu_fallback=False applies to DLA engines only; give dla_core=N too"),
        ({"hardware_compatible": True}, "unknown tensorrt-onnx option 'hardware_compatible'"),
    ]:
        with pytest.raises(DenseNetTRTError, match=re.escape(message)):
            OnnxTensorRTSettings.from_options(options)
    assert OnnxTensorRTSettings.from_options({"dla_core": 1, "gpu_fallback": False}).dla_core == 1


def test_a_dla_core_the_board_does_not_have_is_refused():
    check_dla(None, 0)
    check_dla(1, 2)
    with pytest.raises(DenseNetTRTError, match="dla_core=2, but this device has DLA cores 0 to 1"):
        check_dla(2, 2)
    with pytest.raises(DenseNetTRTError, match="dla_core=0, but this device has no DLA"):
        check_dla(0, 0)


def test_the_timing_cache_is_one_per_tensorrt_major_beside_the_engines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = OnnxTensorRTSettings()
    assert timing_cache_file(spec(cache_dir="."), settings, 10) == tmp_path / "timing-tensorrt10.cache"
    assert timing_cache_file(spec(), settings, 11) is None
    given = OnnxTensorRTSettings(timing_cache_path="x.cache")
    assert timing_cache_file(spec(cache_dir="elsewhere"), given, 11) == tmp_path / "x.cache"


# --- availability -------------------------------------------------------------------------------


def test_availability_says_why_in_one_line():
    assert availability("11.1.0.106", "", True, []).ok and availability("10.3.0", "", True, []).ok
    cases = [
        (availability(None, "", True, []), "TensorRT's Python API (tensorrt) is not installed"),
        (availability(None, "ImportError: libnvinfer.so.10: cannot open shared object file", True, []),
         "import tensorrt fails: ImportError: libnvinfer.so.10"),
        (availability("9.3.0", "", True, []), "TensorRT 9.3.0 is installed but backend tensorrt-onnx supports"),
        (availability("10.3.0", "", False, []), "no NVIDIA GPU with CUDA is visible"),
        (availability("10.3.0", "", True, ["onnxscript"]), "onnxscript not installed"),
    ]
    for state, reason in cases:
        assert not state.ok and state.reason.startswith(reason) and state.hint
        assert "\n" not in state.message("tensorrt-onnx")


def test_the_import_is_probed_in_a_subprocess():
    assert probe("densenet_trt_no_such_module") == (
        None, "ModuleNotFoundError: No module named 'densenet_trt_no_such_module'")
    import numpy

    assert probe("numpy") == (numpy.__version__, "")


def test_importing_the_backend_imports_no_tensorrt():
    code = "import sys, densenet_trt.backends.tensorrt_onnx; assert 'tensorrt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_here_it_is_unavailable_in_one_line_and_builds_nothing(tmp_path):
    backend = OnnxTensorRTBackend()
    state = backend.available()
    if state.ok:
        pytest.skip("TensorRT's Python API and a GPU are here")
    assert backend.precisions("cuda") == {} and backend.precisions("cpu") == {}
    with pytest.raises(DenseNetTRTError, match="backend tensorrt-onnx is not available"):
        backend.build(create_model("densenet_bc100_k12", **SMALL), spec(), tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the command line -------------------------------------------------------------------------------


def test_the_command_line_refuses_in_one_line(tmp_path):
    if BACKENDS["tensorrt-onnx"].available().ok:
        pytest.skip("TensorRT's Python API and a GPU are here")
    base = ["build", "--model", "densenet_bc40_k12", "--output", str(tmp_path)]
    for args, message in [
        (["--backend", "tensorrt-onnx"], "error: backend tensorrt-onnx is not available: "),
        (["--backend", "onnxruntime", "--dla-core", "0"], "error: backend onnxruntime takes no option dla_core"),
        (["--backend", "onnxruntime", "--no-gpu-fallback"], "error: backend onnxruntime takes no option gpu_fallback"),
    ]:
        result = CliRunner().invoke(main, base + args)
        assert result.exit_code == 1 and result.stderr.startswith(message), result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    said = as_flags("gpu_fallback=False applies to DLA engines only; give dla_core=N too", main.commands["build"])
    assert said == "--no-gpu-fallback applies to DLA engines only; give --dla-core N too"


def test_auto_says_why_neither_tensorrt_backend_was_taken():
    if BACKENDS["tensorrt-onnx"].available().ok or BACKENDS["tensorrt"].available().ok:
        pytest.skip("a TensorRT backend is usable here")
    _, device, reason = choose_backend("fp32")
    assert device == "cpu" and "tensorrt: " in reason and "tensorrt-onnx: " in reason
    assert "tensorrt-onnx" not in choose_backend("bf16")[2]  # not a bf16 backend


# --- the manifest ------------------------------------------------------------------------------


def manifest(settings=None, tensorrt="10.3.0", tf32=False, **changes):
    """A tensorrt-onnx engine's manifest, as ``build`` writes one on a Jetson Orin (fp16, DLA 0)."""
    from densenet_trt.machine import platform_name
    from densenet_trt.engine.manifest import EngineManifest

    recorded = {"format": "engine", "tensorrt_major": 10, **recipe(10, FP16, dla=True).record(),
                **dataclasses.asdict(OnnxTensorRTSettings(dla_core=0)), "dla_subgraphs": 2, "gpu_layers": 3}
    shape = ["batch", 3, 32, 32]
    data = {
        "model": {"name": "densenet_bc100_k12", "config": {}, "num_classes": 10, "weights": None, "seed": 0,
                  "overrides": {}},
        "backend": "tensorrt-onnx", "format": "engine", "precision": "fp16", "tf32": tf32,
        "batch": {"min": 2, "opt": 2, "max": 2}, "image_size": 32, "in_channels": 3,
        "input": {"name": "input", "dtype": "float16", "shape": shape},
        "output": {"name": "logits", "dtype": "float16", "shape": ["batch", 10]},
        "threads": None, "preprocessing": None, "calibration": None, "int8_speed": None, "labels": None,
        "device": {"type": "cuda", "platform": platform_name(), "cpu": "x", "cpu_count": 1,
                   "gpu": {"name": "Orin", "compute_capability": "8.7", "driver": None, "cuda": "12.6"}},
        "versions": {"tensorrt": tensorrt}, "backend_settings": {**recorded, **(settings or {})},
        "build": {"seconds": 1.0, "time_utc": "2026-01-01T00:00:00+00:00"},
        "files": {FILE: "0" * 64}, "main_file": FILE,
        "accuracy": {"verified": False, "reason": "not run", "reference": None, "tolerance": None,
                     "passed": None, "results": [], "vs_fake_quantized": None},
        **changes,
    }
    return EngineManifest.from_json(data)


def test_the_manifest_records_the_recipe_and_where_the_layers_run():
    m = manifest()
    assert m.backend == "tensorrt-onnx" and m.input.dtype == m.output.dtype == "float16"
    settings = m.backend_settings
    assert settings["builder_flags"] == ["FP16", "GPU_FALLBACK"] and settings["cleared_flags"] == ["TF32"]
    assert settings["strongly_typed"] is False and settings["dla_core"] == 0 and settings["gpu_fallback"] is True
    assert settings["dla_subgraphs"] == 2 and settings["gpu_layers"] == 3
    assert recorded_dla(m) == 0
    assert OnnxTensorRTBackend().io_dtype(FP16) == torch.float16 and OnnxTensorRTBackend().io_dtype(INT8) == torch.float32


@pytest.mark.parametrize("core", ["0", -1, True])
def test_a_bad_recorded_dla_core_is_refused(core):
    with pytest.raises(DenseNetTRTError, match="backend_settings dla_core .* is not a tensorrt-onnx engine's"):
        recorded_dla(manifest({"dla_core": core}))


# --- DLA, the timing cache, bindings, requests in flight (issue 24) -------------------------------


def test_dla_with_a_batch_range_is_refused_in_one_line_before_any_work(tmp_path):
    base = ["build", "--model", "densenet_bc40_k12", "--backend", "tensorrt-onnx", "--precision", "fp16",
            "--dla-core", "0", "--output", str(tmp_path)]
    result = CliRunner().invoke(main, base + ["--batch", "1:8:32"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert result.stderr.startswith("error: --dla-core 0 needs a fixed batch (DLA runs only optimization profiles "
                                    "with min = opt = max), not 1:8:32: give one batch size, e.g. --batch 8")
    assert list(tmp_path.iterdir()) == []
    check_dla_batch({"dla_core": 0}, BatchRange.parse("8"))
    check_dla_batch({}, BatchRange.parse("1:8:32"))


def test_placement_is_what_the_builder_logs_once_it_has_placed_the_network():
    logged = ["[DlaLayer] {ForeignNode[/features/conv0/Conv.../features/denseblock1/Concat]}",
              "[DlaLayer] {ForeignNode[/features/transition1/Conv.../features/norm5/Relu]}",
              "[GpuLayer] /ReduceMean", "[GpuLayer] /classifier/Gemm"]
    assert placement(logged) == {"dla_subgraphs": 2, "gpu_layers": 2}
    assert placement(logged[2:]) == {"dla_subgraphs": 0, "gpu_layers": 2}
    assert placement([]) == {"dla_subgraphs": None, "gpu_layers": None}  # not said: not guessed


def test_a_timing_cache_tensorrt_refuses_is_left_alone_and_said_in_one_line(tmp_path):
    cache = tmp_path / "timing-tensorrt10.cache"
    with pytest.warns(UserWarning) as said:
        assert kept_cache(False, cache) is False  # set_timing_cache's answer for another GPU's cache
    assert len(said) == 1 and str(said[0].message).startswith(f"TensorRT refused the timing cache {cache}")
    assert "\n" not in str(said[0].message)
    assert kept_cache(True, cache) is True


def test_binding_types_map_to_torch_without_nptype():
    """TensorRT 11.1's trt.nptype raises TypeError on BF16 (numpy has no bfloat16)."""
    assert [torch_dtype(n) for n in ("FLOAT", "HALF", "BF16")] == [torch.float32, torch.float16, torch.bfloat16]
    with pytest.raises(DenseNetTRTError, match="a binding of TensorRT type INT8, not one of FLOAT, HALF, BF16"):
        torch_dtype("INT8")
    backends = Path(__file__).resolve().parents[2] / "densenet_trt" / "backends"
    assert not any("nptype(" in (backends / name).read_text() for name in TRT_MODULES)


def test_a_plan_of_a_batch_range_keeps_one_request_in_flight(tmp_path):
    """Concurrent execution contexts of a dynamic shape need an optimization profile each
    (NvInferRuntime.h): a plan of a batch range, which has one, is not run on several streams."""
    from densenet_trt.backends._tensorrt_runtime import PlanRunnerRuntime, TorchTensorRTRuntime
    from densenet_trt.profiling.throughput import in_flight

    ranged = manifest(batch={"min": 1, "opt": 2, "max": 4})
    said = in_flight(SimpleNamespace(device="cuda", runtime=PlanRunnerRuntime(tmp_path, ranged, None)),
                     torch.zeros(2, 3, 32, 32), 2, 1)
    assert said.startswith("TensorRT plan of batch 1:2:4: one request in flight")
    assert in_flight_refusal(BatchRange.parse("1:2:4")) == said and in_flight_refusal(BatchRange.parse("2")) == ""
    torch_tensorrt = TorchTensorRTRuntime(tmp_path, manifest(backend="tensorrt", format="exported-program"))
    assert "one request in flight" in torch_tensorrt.streams(2)  # one context per engine in Torch-TensorRT


def test_the_jetson_install_keeps_jetpacks_torch():
    """docs/jetson.md's install: the package with --no-deps, then its requirements without torch
    and the capture's (onnx, onnxscript), as setup.py states them."""
    root = Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "setup.py").read_text())
    lists = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
             if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
             and isinstance(node.value, ast.List)}
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    requires = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "install_requires"))
    expected = {r for r in requires if not r.startswith("torch")} | {r for r in lists["onnx"] if "onnxruntime" not in r}
    lines = (root / "docs" / "jetson.md").read_text().split("## Install on a Jetson")[1].split("```")[1].splitlines()
    installs = [line.split("#")[0].split() for line in lines if line.startswith("pip install")]
    assert installs[0] == ["pip", "install", "--no-deps", "-e", "."]
    assert {r.strip('"') for r in installs[1][2:]} == expected
    assert not any(r.strip('"').startswith("torch") for line in installs for r in line)


# --- the TensorRT API, against TensorRT's sources -------------------------------------------------

RELEASES = {10: "v10.3.0", 11: "v11.1"}  # JetPack 6's TensorRT, and the release torch-tensorrt 2.14 needs
BINDINGS = ("python/src/infer/pyCore.cpp", "python/src/infer/pyGraph.cpp", "python/src/infer/pyFoundationalTypes.cpp",
            "python/src/parsers/pyOnnx.cpp", "python/packaging/bindings_wheel/tensorrt/__init__.py")
# The headers infer_tensorrt.cpp includes (NvInferRuntime.h and those it includes), by release.
HEADERS = ("NvInferRuntime.h", "NvInferImpl.h", "NvInferRuntimeCommon.h", "NvInferRuntimeBase.h",
           "NvInferRuntimePlugin.h", "NvInferLegacyDims.h", "NvInferVersion.h")
HEADERS_11 = ("NvInferPluginBase.h",)
# The modules whose attributes on TensorRT objects are checked against the bindings.
TRT_MODULES = ("_trt_api.py", "_tensorrt_runtime.py")
# Attribute names there that are not TensorRT's: Python's, torch's and the backend's own.
NOT_TENSORRT = {
    "append", "contiguous", "cuda", "cuda_stream", "current_stream", "data_ptr", "errors", "float32", "is_file",
    "items", "read_bytes", "removeprefix", "shape", "split", "to", "write_bytes", "empty", "__init__", "logger",
    "runtime", "engine", "context", "input_dtype", "output_dtype", "batch", "in_channels", "image_size", "min",
    "opt", "max", "dla_core", "workspace_size", "optimization_level", "gpu_fallback", "builder_flags",
    "cleared_flags", "half_io", "last", "Tensor", "join", "placed", "startswith", "exists", "get", "first",
    "Lock", "lock", "Stream", "stream", "wait_stream", "runner", "contexts", "synchronize", "counting",
    "totals", "folder", "manifest", "main_file", "bfloat16", "values", "backend", "device", "warn",
}


@pytest.fixture(scope="module")
def binding_sources():
    """TensorRT's Python binding sources of each release (``helpers.tensorrt_source``: pinned, cached)."""
    return {major: "\n".join(tensorrt_source(tag, path).decode() for path in BINDINGS)
            for major, tag in RELEASES.items()}


def _builder_flags(source: str) -> set[str]:
    return set(re.findall(r'\.value\("(\w+)", BuilderFlag::k', source))


def test_every_flag_the_recipes_use_is_a_builder_flag_of_that_release(binding_sources):
    for major, source in binding_sources.items():
        flags = _builder_flags(source)
        used = {f for p in (FP32, FP16, INT8) for dla in (False, True)
                for f in recipe(major, p, dla=dla and p is not FP32).builder_flags + recipe(major, p).cleared_flags}
        assert used <= flags, (major, used - flags)
    assert {"FP16", "INT8"} <= _builder_flags(binding_sources[10])
    assert not {"FP16", "INT8", "BF16"} & _builder_flags(binding_sources[11])  # removed in 11: strongly typed
    assert '.value("EXPLICIT_BATCH"' not in binding_sources[11]  # create_network(0) is explicit batch in both


def test_every_tensorrt_call_of_the_backend_is_in_both_releases_bindings(binding_sources):
    backends = Path(__file__).resolve().parents[2] / "densenet_trt" / "backends"
    trees = [ast.parse((backends / name).read_text()) for name in TRT_MODULES]
    used = {node.attr for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Attribute)} - NOT_TENSORRT
    used |= {"desc", "num_errors", "get_error"}  # called on results, spelled here for clarity
    for major, source in binding_sources.items():
        missing = sorted(name for name in used if f'"{name}"' not in source and f"{name} =" not in source)
        assert not missing, (RELEASES[major], missing)


def test_setting_a_bindings_dtype_is_tensorrt_10s_alone(binding_sources):
    """TensorRT 10's fp16 recipe sets the network's input and output to float16; 11 made
    ITensor.dtype read-only (the strongly typed network takes it from the ONNX), so the 11
    recipe must not."""
    assert re.search(r'def_property\("dtype", &ITensor::getType, [^)]*setType', binding_sources[10])
    assert 'def_property_readonly("dtype", &ITensor::getType)' in binding_sources[11]
    assert not recipe(11, FP16).half_io


# --- on an NVIDIA GPU (or Jetson) with TensorRT's Python API --------------------------------------

trt_api = pytest.mark.tensorrt(module="tensorrt")


@pytest.mark.gpu
@trt_api
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_load_and_compare_with_eager(tmp_path, precision):
    from densenet_trt import build
    from densenet_trt.engine.build import verify_engine

    artifact = build("densenet_bc100_k12", backend="tensorrt-onnx", precision=precision, batch="1:2:4",
                     overrides=SMALL, output=tmp_path)
    m = artifact.manifest
    assert m.input.dtype == m.output.dtype == Precision(precision).dtype_name
    assert (tmp_path / "timing-tensorrt{}.cache".format(m.backend_settings["tensorrt_major"])).is_file()
    assert m.backend_settings["dla_subgraphs"] in (0, None) and m.accuracy.passed
    engine = load(artifact.path)
    net = create_model("densenet_bc100_k12", **SMALL).eval()
    for n in (1, 3, 4):
        x = example_input(n, 32, seed=n)
        with torch.no_grad():
            assert compare(net(x), engine(x), Precision(precision).tolerance).passes()
    assert verify_engine(artifact.path, 8).passed


@pytest.mark.gpu
@trt_api
def test_an_allow_tf32_plan_passes_with_tf32s_tolerance(tmp_path):
    from densenet_trt import build
    from densenet_trt.engine.spec import TF32_TOLERANCE

    artifact = build("densenet_bc100_k12", backend="tensorrt-onnx", batch="1:2:4", overrides=SMALL,
                     options={"allow_tf32": True}, output=tmp_path)
    assert artifact.manifest.tf32 and artifact.manifest.accuracy.tolerance == TF32_TOLERANCE
    assert artifact.manifest.backend_settings["cleared_flags"] == []


@pytest.mark.gpu
@trt_api
def test_int8_from_the_calibrate_stages_qdq_onnx(tmp_path):
    pytest.importorskip("modelopt", reason="INT8 needs nvidia-modelopt")
    from densenet_trt import build
    from densenet_trt.int8.quantize import calibrate

    cal = calibrate("densenet_bc100_k12", data="synthetic", samples=32, batch_size=16,
                    output=tmp_path / "cal", name="c")
    artifact = build("densenet_bc100_k12", backend="tensorrt-onnx", precision="int8", calibration=cal.path,
                     batch="1:2:4", output=tmp_path / "engines")
    assert artifact.manifest.accuracy.passed and artifact.manifest.accuracy.vs_fake_quantized["passed"]
    assert artifact.manifest.input.dtype == "float32"


@pytest.mark.gpu
@trt_api
def test_a_fixed_batch_plan_runs_an_execution_context_per_stream_and_times_its_layers(tmp_path):
    from densenet_trt import build, profile

    artifact = build("densenet_bc100_k12", backend="tensorrt-onnx", batch="2", overrides=SMALL, output=tmp_path)
    engine = load(artifact.path)
    runners = engine.runtime.streams(3)
    assert len({id(r.context) for r in runners}) == 3 and len({id(r.stream) for r in runners}) == 3
    x = example_input(2, 32, seed=1).cuda()
    expected = engine.run(x).float().cpu()
    for runner in runners:
        assert torch.equal(runner(x).float().cpu(), expected)
    report = profile([artifact.path], batch_size=[2], mode="throughput", requests=3, duration=0.5, vs="none", layers=5)
    assert [r.how for r in report.rows if r.requests == 3] == ["3 CUDA streams, one thread each"]
    assert report.layers[0].source == "TensorRT IProfiler" and report.layers[0].layers


def test_tensorrt_runs_off_the_legacy_default_stream():
    """Every execute_async_v3 enqueues on a stream the code made (``torch.cuda.Stream()``), never
    on torch's current stream, which is the legacy default stream unless changed."""
    backends = Path(__file__).resolve().parents[2] / "densenet_trt" / "backends"
    for name in TRT_MODULES:
        tree = ast.parse((backends / name).read_text())
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "attr", "") == "execute_async_v3"]
        assert calls and all("current_stream" not in ast.unparse(c) for c in calls), name
        assert "stream = torch.cuda.current_stream()" not in ast.unparse(tree), name
        assert "wait_stream" in ast.unparse(tree), name


def test_infer_tensorrt_compiles_against_both_releases_headers(binding_sources, tmp_path):
    """examples/cpp/infer_tensorrt.cpp, which runs this backend's plans from C++, against the
    TensorRT 10.3 and 11.1 headers (syntax and types only: no libraries are linked here)."""
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None or not (cuda / "cuda_runtime_api.h").is_file():
        pytest.skip(f"needs a C++ compiler and CUDA's headers in {cuda} (set CUDA_HOME)")
    source = Path(__file__).resolve().parents[2] / "examples" / "cpp" / "infer_tensorrt.cpp"
    for major, tag in RELEASES.items():
        include = tmp_path / tag / "include"
        include.mkdir(parents=True)
        for name in HEADERS + (HEADERS_11 if major >= 11 else ()):
            (include / name).write_bytes(tensorrt_source(tag, f"include/{name}"))
        result = subprocess.run([compiler, "-std=c++17", "-fsyntax-only", "-w", f"-I{include}", f"-I{cuda}",
                                 f"-I{source.parent}", str(source)], capture_output=True, text=True)
        assert result.returncode == 0, (tag, result.stderr[-2000:])


def test_infer_tensorrt_sets_the_recorded_dla_core_before_deserializing():
    """IRuntime's DLA core defaults to -1 (NvInferRuntime.h): a DLA plan needs setDLACore first,
    with the core its manifest records."""
    source = (Path(__file__).resolve().parents[2] / "examples" / "cpp" / "infer_tensorrt.cpp").read_text()
    assert '{"backend_settings", "dla_core"}' in source
    assert -1 < source.index("runtime->setDLACore(dla_core)") < source.index("runtime->deserializeCudaEngine(")
    assert "getNbDLACores()" in source


def test_triton_serves_its_plans_with_its_tensorrt_backend():
    from densenet_trt.deploy.triton import triton_target

    target = triton_target(manifest())
    assert target.setting == ("platform", "tensorrt_plan") and target.files == {FILE: "model.plan"}
    assert (target.input_name, target.output_name, target.kind) == ("input", "logits", "KIND_GPU")
