import json

import pytest
import torch
from click.testing import CliRunner

from densenet_trt import create_model
from densenet_trt.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_of_every_command_has_an_example():
    assert run("--help").exit_code == 0
    for command in main.commands:
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output, command


def test_profile_help_names_the_bounds_of_a_run():
    text = " ".join(run("profile", "--help").output.split())
    for bound in ("0 to 1,000,000", "1 to 1,000,000", "(finite, up to 3600)", "0 to 10 (PyTorch's"):
        assert bound in text, bound


def test_models_table_and_json():
    table = run("models")
    assert table.exit_code == 0
    line = next(l for l in table.output.splitlines() if l.startswith("densenet121 "))
    assert "7,978,856" in line and "2.83 G" in line and "224x224" in line and "74.434" in line
    rows = {r["name"]: r for r in json.loads(run("models", "--json").output)}
    assert rows["densenet121"]["macs"] == pytest.approx(2.834e9, rel=1e-3)
    assert rows["densenet_bc100_k12"]["image_size"] == 32
    assert rows["densenet40_k12"]["references"][0] == {
        "metric": "CIFAR-10+ error", "value": 5.24, "source": "paper Table 2"}


def test_export_with_a_checkpoint(tmp_path):
    model = create_model("densenet_bc40_k12", num_classes=5)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    out = tmp_path / "m.ts"  # the fastest format to write (ONNX: tests/engine/test_export.py)
    result = run("export", "--model", "densenet_bc40_k12", "--weights", tmp_path / "w.pth",
                 "--format", "torchscript", "--batch", "1:2:4", "--output", out)
    assert result.exit_code == 0, result.output
    assert "matches eager PyTorch" in result.stdout and out.is_file()
    assert "batch 4: max abs" in result.stderr and "random weights" not in result.stderr


def test_export_quiet_and_random_weights_notice(tmp_path):
    args = ["export", "--model", "densenet_bc40_k12", "--format", "torchscript", "--output"]
    loud = run(*args, tmp_path / "a.ts")
    assert loud.exit_code == 0 and "random weights" in loud.stderr
    quiet = run(*args, tmp_path / "b.ts", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "densenet12"], "unknown model 'densenet12': did you mean densenet121"),
        (["--batch", "8:1:32"], "must satisfy 1 <= min <= opt <= max"),
        (["--image-size", "16"], "image size 16 is too small for densenet121"),
        (["--weights", "missing.pth"], "checkpoint 'missing.pth' does not exist"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "m.onnx"
    result = run("export", "--format", "onnx", "--output", out, *args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_does_not_fit(tmp_path):
    torch.save(create_model("densenet40_k12").state_dict(), tmp_path / "w.pth")
    result = run("export", "--model", "densenet_bc100_k12", "--weights", tmp_path / "w.pth",
                 "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "does not fit this model" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


def test_debug_shows_the_traceback():
    result = run("--debug", "export", "--model", "nope", "--format", "onnx", "--output", "x.onnx")
    assert result.exit_code == 1 and result.exc_info[0].__name__ == "DenseNetTRTError"


def test_build_info_verify(tmp_path):
    # torchscript: the backend that builds fastest (every backend's build: tests/engine/test_build.py)
    built = run("build", "--model", "densenet_bc40_k12", "--backend", "torchscript", "--batch", "1:2:4",
                "--output", tmp_path, "--name", "e")
    assert built.exit_code == 0, built.output
    assert "random weights" in built.stderr and "checking against eager" in built.stderr
    assert built.stdout.startswith(f"built {tmp_path / 'e' / 'model.ts'} (torchscript, fp32, batch 1:2:4, 32x32")
    assert "matches eager PyTorch: batch 1 max abs" in built.stdout

    shown = run("info", tmp_path / "e")
    assert shown.exit_code == 0
    assert "backend  torchscript (torchscript, model.ts)" in shown.output and "runs here  yes" in shown.output
    as_json = json.loads(run("info", tmp_path / "e" / "model.ts", "--json").output)
    assert as_json["runs_here"] and as_json["manifest"]["precision"] == "fp32"

    checked = run("verify", tmp_path / "e", "--samples", "5", "--seed", "1")
    assert checked.exit_code == 0, checked.output
    assert "5 distinct random inputs (seed 1) match eager PyTorch" in checked.stdout


def test_build_auto_says_which_backend_and_json(tmp_path):
    built = run("build", "--model", "densenet_bc40_k12", "--output", tmp_path, "--json")
    assert built.exit_code == 0, built.output
    manifest = json.loads(built.stdout)  # the progress is on stderr
    assert manifest["accuracy"]["passed"]
    assert f"backend auto: {manifest['backend']} on cpu, because no TensorRT" in built.stderr
    quiet = run("build", "--model", "densenet_bc40_k12", "--backend", "torchscript", "--output", tmp_path,
                "--json", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["backend"] == "torchscript"


def test_info_of_a_corrupt_engine_says_why_it_cannot_run(engine_copy):
    (engine_copy.path / "model.onnx").write_bytes(b"garbage")
    shown = run("info", engine_copy.path)
    assert shown.exit_code == 0 and "runs here  no: " in shown.output and "sha256" in shown.output
    checked = run("verify", engine_copy.path)
    assert checked.exit_code == 1 and "sha256" in checked.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "tensorrt"], "backend tensorrt is not available"),
        (["--precision", "int8"], "int8 needs a calibration"),
        (["--precision", "int8"], "and pass its folder as --calibration FOLDER\n"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "it can do fp32, int8; bf16 is available here with"),
        (["--workspace-gb", "-1"], "workspace-gb"),
        (["--opt-level", "7"], "opt-level"),
    ],
)
def test_build_refusals_are_one_line(tmp_path, args, message):
    result = run("build", "--model", "densenet_bc100_k12", "--output", tmp_path / "out", *args)
    assert result.exit_code != 0 and message in result.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_checkpoint_to_get_is_asked_for_as_the_flag(tmp_path, monkeypatch):
    """The library says weights=PATH; the command line says the flag docs/guarantees.md promises."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    result = run("build", "--model", "densenet121", "--weights", "imagenet", "--output", tmp_path / "out")
    assert result.exit_code == 1 and "and pass its path as --weights PATH (or put it at" in result.stderr
    result = run("build", "--model", "densenet_bc100_k12", "--weights", "imagenet", "--output", tmp_path / "out")
    assert result.stderr.endswith("\nerror: no published checkpoint for densenet_bc100_k12; train one and pass its path as --weights PATH\n")


def test_tensorrt_options_on_another_backend_are_refused(tmp_path):
    result = run("build", "--model", "densenet_bc100_k12", "--backend", "onnxruntime",
                 "--opt-level", "3", "--output", tmp_path)
    assert result.exit_code == 1 and "takes no option optimization_level (options of backend tensorrt, tensorrt-onnx; it takes none)" in result.stderr


def test_the_backends_flags_reach_build_as_the_settings_they_declare(monkeypatch, tmp_path):
    """Each flag a backend declares on its settings sets that setting, zero included (--opt-level
    0, --dla-core 0); a flag left out sets nothing."""
    import sys

    from densenet_trt.errors import DenseNetTRTError

    given = []

    def build(*args, options, **kwargs):
        given.append(options)
        raise DenseNetTRTError("stopped before the build")

    monkeypatch.setattr(sys.modules["densenet_trt.engine.build"], "build", build)
    result = run("build", "--workspace-gb", "0.5", "--opt-level", "0", "--timing-cache", tmp_path / "t.cache",
                 "--hardware-compatible", "--version-compatible", "--allow-tf32", "--dla-core", "0",
                 "--no-gpu-fallback")
    assert result.exit_code == 1 and given == [{
        "workspace_size": 1 << 29, "optimization_level": 0, "timing_cache_path": str(tmp_path / "t.cache"),
        "hardware_compatible": True, "version_compatible": True, "allow_tf32": True, "dla_core": 0,
        "gpu_fallback": False}]
    run("build")
    assert given[-1] == {}


def test_missing_engine():
    result = run("info", "no/such/engine")
    assert result.exit_code == 1 and result.stderr == "error: engine 'no/such/engine' does not exist\n"


def test_a_folder_of_engines_and_swapped_arguments_say_what_is_wrong(tmp_path):
    """Not "has no manifest.json ... (rebuild it)", which is the wrong advice for both."""
    for name in ("b", "a"):
        (tmp_path / "engines" / name).mkdir(parents=True)
        (tmp_path / "engines" / name / "manifest.json").write_text("{}")
    (tmp_path / "engines" / "notes").mkdir()
    result = run("info", f"{tmp_path / 'engines'}/")
    engines = tmp_path / "engines"
    assert result.exit_code == 1
    assert result.stderr == f"error: {engines} is a folder of engines: give one of: {engines / 'a'}, {engines / 'b'}\n"
    (tmp_path / "cat.JPG").write_bytes(b"")
    result = run("predict", tmp_path / "cat.JPG", engines / "a")
    assert result.exit_code == 1 and result.stderr == (
        f"error: {tmp_path / 'cat.JPG'} looks like an image, not an engine: give an engine's folder (the one "
        "`densenet-trt build` wrote)\n")


def test_package_import_and_help_load_no_heavy_or_device_bound_library():
    import subprocess
    import sys

    code = ("import sys, densenet_trt, densenet_trt.cli; "
            "print(sorted(m for m in ('torch_tensorrt', 'tensorrt', 'openvino', 'onnxruntime', 'modelopt', "
            "'matplotlib', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Every command's --help, the group's, and `models` (its counts are recorded in the registry); but
# `build --help`, which lists the flags the backends declare, and the backends import torch.
NO_TORCH = [["--help"], ["models"], ["models", "--json"], *([name, "--help"] for name in main.commands if name != "build")]


def test_help_and_models_answer_without_importing_torch():
    """torch takes seconds to import: `densenet-trt --help`, each `COMMAND --help` and
    `models` answer from the command line's own modules and the preset table alone."""
    import subprocess
    import sys

    code = ("import sys; from densenet_trt.console import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "sys.stderr.write(f'exit {code} torch {\"torch\" in sys.modules}\\n')")
    for args in NO_TORCH:
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert out.stderr.splitlines()[-1] == "exit 0 torch False", (args, out.stderr[-2000:])


def test_profile_command(shared_engine, tmp_path):
    out = tmp_path / "r"
    result = run("profile", shared_engine.path, "--batch-size", "1,4,8", "--iterations", "2", "--warmup-iterations", "1",
                 "--gap", "0", "--json", f"{out}.json", "--csv", f"{out}.csv", "--markdown", f"{out}.md",
                 "--plot", f"{out}.png")
    assert result.exit_code == 0, result.output
    assert "| [0]" in result.stdout and "eager fp32" in result.stdout
    assert "batch 8 skipped: e: batch 8 is outside this engine's batch range 1:2:4" in result.stdout
    for suffix in ("json", "csv", "md", "png"):
        assert (tmp_path / f"r.{suffix}").stat().st_size > 0
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "densenet-trt/profile"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--iterations", "0"], "iterations must be a positive integer"),
        (["--duration", "-1"], "duration must be a positive number"),
        (["--iterations", "1", "--cuda-graphs"], "cuda_graphs applies to GPU engines"),
        (["--iterations", "1", "--include-transfers"], "include_transfers applies to GPU engines"),
        (["--iterations", "1", "--batch-size", "64"], "no batch size can run"),
        (["--iterations", "1", "--json", "/no/such/dir/r.json"], "does not exist"),
    ],
)
def test_profile_refusals(shared_engine, args, message):
    result = run("profile", shared_engine.path, *args)
    assert result.exit_code == 1 and message in result.stderr, result.output


def test_export_triton_command(shared_engine, tmp_path):
    result = run("export-triton", shared_engine.path, "--repository", tmp_path / "repo", "--model-name", "d",
                 "--max-batch-size", "2", "--instances", "3", "--no-dynamic-batching")
    assert result.exit_code == 0 and (tmp_path / "repo" / "d" / "1" / "model.onnx").is_file()
    config = (tmp_path / "repo" / "d" / "config.pbtxt").read_text()
    assert "max_batch_size: 2" in config and "count: 3" in config and "dynamic_batching" not in config
    again = run("export-triton", shared_engine.path, "--repository", tmp_path / "repo", "--model-name", "d")
    assert again.exit_code == 1 and again.stderr == f"error: {tmp_path / 'repo' / 'd'} exists; pass --force to replace it\n"
