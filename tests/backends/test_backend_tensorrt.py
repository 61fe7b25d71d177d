import ast
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.utils._pytree as pytree
from helpers import torch_tensorrt_wheel

from densenet_trt import BatchRange, DenseNetTRTError, create_model
from densenet_trt.engine.load import Engine
from densenet_trt.backends.tensorrt import (
    BINDING_NAMES,
    FILES,
    SAVE_FORMATS,
    TensorRTBackend,
    TensorRTSettings,
    artifact_format,
    check_engine_compatible,
    compile_kwargs,
    input_shapes,
    precisions_for,
    release,
    unsupported_reason,
)
from densenet_trt.engine.capture import capture_exported_program, example_input
from densenet_trt.machine import platform_name
from densenet_trt.engine.manifest import EngineManifest
from densenet_trt.engine.spec import BuildSpec, Precision
from densenet_trt.engine.verify import compare

SMALL = dict(block_config=(2, 2, 2))


def spec(precision="fp32", batch="1:2:4", **kwargs):
    return BuildSpec(precision=precision, batch=BatchRange.parse(batch), image_size=32, **kwargs)


# --- settings ---------------------------------------------------------------------------------


def test_settings_defaults_leave_the_library_defaults():
    settings = TensorRTSettings.from_options({})
    assert settings == TensorRTSettings()
    assert settings.workspace_size is None and settings.optimization_level is None
    assert settings.timing_cache_path is None and settings.min_block_size is None
    assert not settings.hardware_compatible and not settings.version_compatible
    assert not settings.allow_tf32 and not settings.require_full_compilation


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(DenseNetTRTError, match="unknown TensorRT option 'workspace'") as info:
        TensorRTSettings.from_options({"workspace": 1 << 30})
    for name in TensorRTSettings.names():
        assert name in str(info.value)


@pytest.mark.parametrize("level", [-1, 6, 3.0, "3", True])
def test_optimization_level_outside_0_to_5_is_refused(level):
    with pytest.raises(DenseNetTRTError, match="optimization_level must be an integer from 0 to 5"):
        TensorRTSettings.from_options({"optimization_level": level})


@pytest.mark.parametrize("level", [0, 5])
def test_optimization_level_bounds_are_accepted(level):
    assert TensorRTSettings.from_options({"optimization_level": level}).optimization_level == level


@pytest.mark.parametrize(
    "options, message",
    [
        ({"workspace_size": 0}, "workspace_size must be an integer of at least 1"),
        ({"workspace_size": "1G"}, "workspace_size"),
        ({"min_block_size": 0}, "min_block_size"),
        ({"timing_cache_path": ""}, "timing_cache_path must be a file path"),
        ({"timing_cache_path": 3}, "timing_cache_path"),
        ({"hardware_compatible": "yes"}, "hardware_compatible must be true or false"),
        ({"version_compatible": 1}, "version_compatible must be true or false"),
        ({"allow_tf32": None}, "allow_tf32"),
    ],
)
def test_bad_option_values_are_refused(options, message):
    with pytest.raises(DenseNetTRTError, match=message):
        TensorRTSettings.from_options(options)


def test_hardware_compatible_needs_an_ampere_or_newer_build_gpu():
    with pytest.raises(DenseNetTRTError, match=r"8\.0.*this GPU is 7\.5"):
        TensorRTSettings.from_options({"hardware_compatible": True}, (7, 5))
    assert TensorRTSettings.from_options({"hardware_compatible": True}, (8, 0)).hardware_compatible
    assert TensorRTSettings.from_options({"hardware_compatible": True}).hardware_compatible  # no GPU to check


# --- compile arguments ------------------------------------------------------------------------

DEFAULT_KWARGS = {
    "disable_tf32": True,
    "require_full_compilation": False,
    "hardware_compatible": False,
    "version_compatible": False,
}
ALL_OPTIONS = {
    "workspace_size": 1 << 30,
    "optimization_level": 5,
    "timing_cache_path": "/tmp/cache/timing.bin",
    "min_block_size": 1,
    "require_full_compilation": True,
    "allow_tf32": True,
    "hardware_compatible": True,
    "version_compatible": True,
}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_compile_kwargs_carry_no_precision_flag(precision):
    kwargs = compile_kwargs(spec(precision), TensorRTSettings())
    assert kwargs == DEFAULT_KWARGS
    assert "enabled_precisions" not in kwargs and "use_explicit_typing" not in kwargs


def test_compile_kwargs_pass_every_setting_through():
    kwargs = compile_kwargs(spec(), TensorRTSettings.from_options(ALL_OPTIONS))
    assert kwargs == {
        "disable_tf32": False,
        "require_full_compilation": True,
        "hardware_compatible": True,
        "version_compatible": True,
        "workspace_size": 1 << 30,
        "optimization_level": 5,
        "timing_cache_path": "/tmp/cache/timing.bin",
        "min_block_size": 1,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs  # recorded in the manifest as it is


def test_timing_cache_defaults_to_the_engines_folder_and_an_explicit_path_wins():
    in_folder = dataclasses.replace(spec(), cache_dir="/data/engines")
    assert compile_kwargs(in_folder, TensorRTSettings())["timing_cache_path"] == "/data/engines/timing.cache"
    explicit = TensorRTSettings(timing_cache_path="/tmp/t.cache")
    assert compile_kwargs(in_folder, explicit)["timing_cache_path"] == "/tmp/t.cache"


def test_int8_engines_take_float32_around_the_qdq_pairs():
    assert input_shapes(spec("int8"))["dtype"] == torch.float32
    assert "enabled_precisions" not in compile_kwargs(spec("int8"), TensorRTSettings())


def test_inputs_are_declared_in_the_precisions_dtype():
    for precision, dtype in [("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)]:
        assert input_shapes(spec(precision))["dtype"] == dtype


# --- the 2.14.0 API, read from its source -----------------------------------------------------


@pytest.fixture(scope="module")
def tt_source(tmp_path_factory):
    """The installed torch_tensorrt package (found, not imported), else the Python files of the
    pinned 2.14.0 wheel (``helpers.torch_tensorrt_wheel``: cached, ``TORCH_TENSORRT_WHEEL``)."""
    found = importlib.util.find_spec("torch_tensorrt")
    source = Path(found.origin).parent if found is not None and found.origin else None
    if source is None or not (source / "dynamo" / "_compiler.py").is_file():
        folder = tmp_path_factory.mktemp("torch_tensorrt_wheel")
        with zipfile.ZipFile(torch_tensorrt_wheel()) as archive:
            archive.extractall(folder, [name for name in archive.namelist() if name.endswith(".py")])
        source = folder / "torch_tensorrt"
    version = ast.literal_eval(
        next(
            line.split("=", 1)[1].strip()
            for line in (source / "_version.py").read_text().splitlines()
            if line.startswith("__version__")
        )
    )
    if unsupported_reason(version):
        pytest.skip(f"the torch-tensorrt source at {source} is {version}, not a supported release")
    return source


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _parameters(function: ast.FunctionDef) -> set[str]:
    return {a.arg for a in function.args.args + function.args.kwonlyargs}


def test_every_compile_kwarg_is_a_parameter_of_the_supported_release(tt_source):
    functions = _functions(tt_source / "dynamo" / "_compiler.py")
    compile_params = _parameters(functions["compile"])
    convert_params = _parameters(functions["convert_exported_program_to_serialized_trt_engine"])
    assert "enabled_precisions" not in compile_params  # the strongly typed API this backend speaks
    kwargs = compile_kwargs(spec(), TensorRTSettings.from_options(ALL_OPTIONS))
    assert set(kwargs) <= compile_params  # unknown keywords would be swallowed silently
    assert set(kwargs) <= convert_params
    assert set(BINDING_NAMES) <= convert_params
    assert {"arg_inputs", "exported_program"} <= compile_params


def test_save_formats_are_what_torch_tensorrt_save_accepts(tt_source):
    source = tt_source / "_compile.py"
    save = _functions(source)["save"]
    assert {"module", "file_path", "output_format", "arg_inputs", "dynamic_shapes"} <= _parameters(save)
    accepted = next(
        ast.literal_eval(node.value)
        for node in ast.walk(save)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "accepted_formats" for t in node.targets)
    )
    assert set(SAVE_FORMATS.values()) <= accepted
    assert set(SAVE_FORMATS) | {"engine"} == set(FILES)


def test_binding_names_match_the_exported_program_structure():
    # convert_exported_program_to_serialized_trt_engine checks the names' pytree against these specs.
    program = capture_exported_program(create_model("densenet_bc100_k12", **SMALL), BatchRange.parse("1:2:4"), 32)
    signature = program.module_call_graph[0].signature
    assert pytree.tree_flatten(BINDING_NAMES["arg_input_binding_names"])[1] == signature.in_spec.child(0)
    assert pytree.tree_flatten(BINDING_NAMES["output_binding_names"])[1] == signature.out_spec


# --- shapes and formats -----------------------------------------------------------------------


def test_input_shapes_for_a_dynamic_batch():
    shapes = input_shapes(spec("fp16", "1:8:32"))
    assert shapes == {
        "min_shape": (1, 3, 32, 32),
        "opt_shape": (8, 3, 32, 32),
        "max_shape": (32, 3, 32, 32),
        "dtype": torch.float16,
    }


def test_input_shapes_for_a_static_batch():
    shapes = input_shapes(BuildSpec("bf16", BatchRange.parse("4"), 64, in_channels=1))
    assert shapes["min_shape"] == shapes["opt_shape"] == shapes["max_shape"] == (4, 1, 64, 64)
    assert shapes["dtype"] == torch.bfloat16
    assert input_shapes(spec("fp32"))["dtype"] == torch.float32


def test_formats_and_files():
    backend = TensorRTBackend()
    assert backend.formats == ("exported-program", "torchscript", "aot-inductor", "engine")
    assert tuple(FILES) == backend.formats
    assert FILES == {
        "exported-program": "model.ep",
        "torchscript": "model.ts",
        "aot-inductor": "model.pt2",
        "engine": "model.engine",
    }
    assert artifact_format(None) == "exported-program"
    assert artifact_format("engine") == "engine"
    with pytest.raises(DenseNetTRTError, match="unknown format 'onnx'.*exported-program, torchscript"):
        artifact_format("onnx")
    assert (backend.name, backend.devices, backend.extra) == ("tensorrt", ("cuda",), "tensorrt")


# --- versions and GPUs ------------------------------------------------------------------------


def test_release_reads_the_leading_numbers():
    assert release("2.14.0+cu130") == (2, 14, 0)
    assert release("11.1.0.7") == (11, 1, 0, 7)
    assert release("2.15.0.dev20260101") == (2, 15, 0)


@pytest.mark.parametrize("version", ["2.14.0", "2.14.1+cu130"])
def test_supported_versions_pass_the_gate(version):
    assert unsupported_reason(version) == ""


@pytest.mark.parametrize("version", ["2.9.0", "2.12.0", "2.13.0", "2.15.0"])
def test_other_versions_are_refused_saying_what_is_supported_and_why(version):
    reason = unsupported_reason(version)
    assert f"torch-tensorrt {version} is installed" in reason
    assert "supports 2.14.x only" in reason
    assert "enabled_precisions" in reason and "2.13" in reason
    assert "\n" not in reason


def test_bf16_needs_ampere():
    turing = precisions_for((7, 5))
    assert set(turing) == {"fp32", "fp16", "int8"}
    assert set(precisions_for((8, 0))) == {"fp32", "fp16", "bf16", "int8"}
    assert set(precisions_for((9, 0))) == {"fp32", "fp16", "bf16", "int8"}
    assert all(note for note in turing.values())


def typed_manifest(build_spec, settings, versions, gpu) -> EngineManifest:
    """A TensorRT engine's typed manifest, as ``build`` writes it (the accuracy gate not run)."""
    b = build_spec.batch
    shape = ["batch" if b.dynamic else b.min, build_spec.in_channels, build_spec.image_size, build_spec.image_size]
    dtype = build_spec.precision.dtype_name
    return EngineManifest.from_json({
        "model": {"name": "densenet_bc100_k12", "config": {}, "num_classes": 10, "weights": None, "seed": 0,
                  "overrides": {}},
        "backend": "tensorrt", "format": settings["format"], "precision": build_spec.precision.value, "tf32": False,
        "batch": b.as_dict(), "image_size": build_spec.image_size, "in_channels": build_spec.in_channels,
        "input": {"name": "input", "dtype": dtype, "shape": shape},
        "output": {"name": "logits", "dtype": dtype, "shape": [shape[0], 10]},
        "threads": None, "preprocessing": None, "calibration": None, "int8_speed": None, "labels": None,
        "device": {"type": "cuda", "platform": platform_name(), "cpu": "x", "cpu_count": 1, "gpu": gpu},
        "versions": versions, "backend_settings": settings,
        "build": {"seconds": 1.0, "time_utc": "2026-01-01T00:00:00+00:00"},
        "files": {FILES[settings["format"]]: "0" * 64}, "main_file": FILES[settings["format"]],
        "accuracy": {"verified": False, "reason": "not run", "reference": None, "tolerance": None,
                     "passed": None, "results": [], "vs_fake_quantized": None},
    })


def manifest(trt="11.1.0.7", capability="9.0", name="NVIDIA H100", gpu=True, **settings):
    return typed_manifest(
        spec(), {"format": "exported-program", **DEFAULT_KWARGS, **settings},
        {"torch-tensorrt": "2.14.0", **({"tensorrt": trt} if trt else {})},
        {"name": name, "compute_capability": capability, "driver": "580.1", "cuda": "13.0"} if gpu else None,
    )


def test_same_tensorrt_and_gpu_is_compatible():
    check_engine_compatible(manifest(), "11.1.0.7", (9, 0))


def test_another_tensorrt_version_is_refused_naming_both():
    with pytest.raises(DenseNetTRTError, match=r"TensorRT 11\.1\.0\.7.*TensorRT 11\.2\.0.*rebuild"):
        check_engine_compatible(manifest(), "11.2.0", (9, 0))


def test_version_compatible_engines_load_here_only_with_the_building_release():
    """Torch-TensorRT builds them with EXCLUDE_LEAN_RUNTIME: a newer TensorRT needs the building
    release's lean runtime loaded by IRuntime::loadRuntime, which this tool's loaders do not do."""
    check_engine_compatible(manifest(version_compatible=True), "11.1.0.7", (9, 0))
    for newer in ("11.3.1", "11.0.0", "12.0.0"):
        with pytest.raises(DenseNetTRTError, match=r"11\.1\.0\.7 and runs with that release only \(version-compatible.*libnvinfer_lean"):
            check_engine_compatible(manifest(version_compatible=True), newer, (9, 0))


def test_another_gpu_architecture_is_refused_naming_both():
    expected = r"NVIDIA H100.*capability 9\.0 only.*this GPU is compute capability 8\.6.*rebuild"
    with pytest.raises(DenseNetTRTError, match=expected):
        check_engine_compatible(manifest(), "11.1.0.7", (8, 6))


def test_hardware_compatible_engines_run_on_ampere_and_newer():
    check_engine_compatible(manifest(hardware_compatible=True), "11.1.0.7", (8, 6))
    check_engine_compatible(manifest(hardware_compatible=True), "11.1.0.7", (12, 0))
    with pytest.raises(DenseNetTRTError, match=r"8\.0 \(Ampere\) or newer.*7\.5"):
        check_engine_compatible(manifest(hardware_compatible=True), "11.1.0.7", (7, 5))


def test_unrecorded_versions_and_gpus_are_not_compared():
    check_engine_compatible(manifest(trt=None), "11.2.0", (9, 0))
    check_engine_compatible(manifest(), None, (9, 0))
    no_gpu = dataclasses.replace(manifest(), device=dataclasses.replace(manifest().device, gpu=None))
    check_engine_compatible(no_gpu, "11.1.0.7", (8, 6))


# --- this machine -----------------------------------------------------------------------------


def test_importing_the_backend_imports_neither_torch_tensorrt_nor_tensorrt():
    code = (
        "import sys, densenet_trt.backends.tensorrt; "
        "assert not {'torch_tensorrt', 'tensorrt'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_availability_here_is_one_line():
    backend = TensorRTBackend()
    availability = backend.available()
    if not torch.cuda.is_available():
        assert not availability.ok
    if not availability.ok:
        assert availability.reason and "\n" not in availability.reason
        assert "\n" not in availability.message("tensorrt")
        assert backend.precisions("cuda") == {}
        with pytest.raises(DenseNetTRTError, match="backend tensorrt is not available"):
            backend.check_compatible(manifest())
        with pytest.raises(DenseNetTRTError, match="backend tensorrt is not available"):
            backend.build(create_model("densenet_bc100_k12", **SMALL), spec(), Path("."))


def test_versions_come_from_package_metadata():
    versions = TensorRTBackend().versions()
    assert set(versions) <= {"torch-tensorrt", "tensorrt"}
    assert all(isinstance(v, str) and v for v in versions.values())


# --- on an NVIDIA GPU with torch-tensorrt -----------------------------------------------------

@pytest.fixture(scope="module")
def small_model():
    return create_model("densenet_bc100_k12", **SMALL).eval()


def _manifest_for(backend, build_spec, settings):
    major, minor = torch.cuda.get_device_capability()
    gpu = {"name": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}", "driver": None,
           "cuda": torch.version.cuda}
    return typed_manifest(build_spec, settings, backend.versions(), gpu)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("fmt", list(FILES))
def test_build_load_and_compare_with_eager(tmp_path, small_model, fmt, precision):
    backend = TensorRTBackend()
    if precision not in backend.precisions("cuda"):
        pytest.skip(f"{precision} needs compute capability 8.0+; this GPU is {torch.cuda.get_device_capability()}")
    build_spec = spec(precision, "1:2:4", format=fmt)
    settings = backend.build(small_model, build_spec, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [FILES[fmt]]
    assert settings["format"] == fmt and json.loads(json.dumps(settings)) == settings
    assert next(small_model.parameters()).dtype == torch.float32  # the caller's model is untouched

    meta = _manifest_for(backend, build_spec, settings)
    backend.check_compatible(meta)
    engine = Engine(tmp_path / FILES[fmt], meta, backend.load(tmp_path, meta))
    tolerance = Precision(precision).tolerance
    for n in (1, 2, 3, 4):
        x = example_input(n, 32, seed=n)
        with torch.no_grad():
            reference = small_model(x)
        result = compare(reference, engine(x), tolerance)
        assert result.passes(), f"{fmt} {precision} batch {n}: {result}"
        assert compare(reference, engine(x.cuda()), tolerance).passes()
    with pytest.raises(DenseNetTRTError, match="outside this engine's batch range 1:2:4"):
        engine(example_input(5, 32))


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_settings_reach_the_build(tmp_path, small_model):
    backend = TensorRTBackend()
    cache = tmp_path / "timing.bin"
    options = {"optimization_level": 1, "workspace_size": 1 << 28, "timing_cache_path": str(cache)}
    build_spec = spec("fp32", "2", format="engine", options=options)
    folder = tmp_path / "artifact"
    folder.mkdir()
    settings = backend.build(small_model, build_spec, folder)
    assert {k: settings[k] for k in options} == options
    assert cache.is_file()
    meta = _manifest_for(backend, build_spec, settings)
    engine = Engine(folder / FILES["engine"], meta, backend.load(folder, meta))
    x = example_input(2, 32)
    with torch.no_grad():
        assert compare(small_model(x), engine(x), Precision.FP32.tolerance).passes()


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("fmt", ["exported-program", "engine"])
def test_int8_from_a_modelopt_calibration(tmp_path, fmt):
    pytest.importorskip("modelopt", reason="INT8 needs nvidia-modelopt")
    from densenet_trt import build
    from densenet_trt.int8.quantize import calibrate

    cal = calibrate("densenet_bc100_k12", data="synthetic", samples=32, batch_size=16,
                    output=tmp_path / "cal", name="c")
    artifact = build("densenet_bc100_k12", backend="tensorrt", precision="int8", calibration=cal.path,
                     batch="1:2:4", format=fmt, output=tmp_path / "engines")
    accuracy = artifact.manifest.accuracy
    assert accuracy.passed and accuracy.vs_fake_quantized["passed"]
    assert artifact.manifest.calibration.method == "max"


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_an_allow_tf32_engine_passes_the_gate_with_tf32s_tolerance(tmp_path):
    """Issue 12, defect 2: held to fp32's 1e-4, a TF32 engine (about 1e-3) never passed."""
    from densenet_trt.engine.build import build, verify_engine
    from densenet_trt.engine.spec import TF32_TOLERANCE

    artifact = build("densenet_bc100_k12", backend="tensorrt", overrides=SMALL, batch="1:2:4", format="engine",
                     options={"allow_tf32": True}, output=tmp_path)
    m = artifact.manifest
    assert m.tf32 and m.backend_settings["disable_tf32"] is False
    assert m.accuracy.passed and m.accuracy.tolerance == TF32_TOLERANCE
    verification = verify_engine(artifact.path, 8)
    assert verification.passed and {c.tolerance for _, c in verification.results} == {TF32_TOLERANCE}


def test_a_relative_timing_cache_path_is_handed_over_resolved(tmp_path, monkeypatch):
    """Torch-TensorRT makes the cache's folder with os.makedirs(dirname(path)) after the build:
    a bare file name (--timing-cache x.cache, or --output .) would crash there."""
    monkeypatch.chdir(tmp_path)
    for options, cache_dir in [({"timing_cache_path": "x.cache"}, None), ({}, ".")]:
        kwargs = compile_kwargs(dataclasses.replace(spec(), cache_dir=cache_dir), TensorRTSettings(**options))
        path = Path(kwargs["timing_cache_path"])
        assert path.is_absolute() and path.parent == tmp_path and os.path.dirname(str(path))


def test_a_package_that_does_not_import_is_not_available_in_one_line():
    """Installed metadata is not enough: the import itself is probed, in a subprocess (a broken
    TensorRT install can abort the process). A module that does not exist stands for it here."""
    from densenet_trt.backends.tensorrt import import_failure

    reason = import_failure("densenet_trt_no_such_module")
    assert reason == "ModuleNotFoundError: No module named 'densenet_trt_no_such_module'"
    assert import_failure("json") == ""


def test_a_plan_built_on_another_platform_is_refused():
    other = manifest()
    other = dataclasses.replace(other, device=dataclasses.replace(other.device, platform="Linux-aarch64"))
    if platform_name() == "Linux-aarch64":
        other = dataclasses.replace(other, device=dataclasses.replace(other.device, platform="Linux-x86_64"))
    with pytest.raises(DenseNetTRTError, match="TensorRT engine was built for Linux-.*; this machine is"):
        check_engine_compatible(other, "11.1.0.7", (9, 0))


def test_the_aot_inductor_format_needs_the_torch_that_built_it():
    aoti = manifest()
    aoti = dataclasses.replace(aoti, format="aot-inductor", versions={**aoti.versions, "torch": "2.13.0"})
    with pytest.raises(DenseNetTRTError, match="built with torch 2.13.0, this machine has"):
        check_engine_compatible(aoti, "11.1.0.7", (9, 0))
    check_engine_compatible(dataclasses.replace(aoti, versions={**aoti.versions, "torch": torch.__version__}),
                            "11.1.0.7", (9, 0))
