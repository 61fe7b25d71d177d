"""Issue 13: an int8 engine timed against the same backend's float32 engine at the build; a
warning where int8 is not faster, both medians in the manifest and in ``info``."""

import json
import shutil
import warnings

import pytest
from click.testing import CliRunner

from densenet_trt import build
from densenet_trt.backends import BACKENDS
from densenet_trt.cli import main
from densenet_trt.int8.speed import CALLS, Int8NotFaster, not_faster, speed_text
from densenet_trt.engine.manifest import MANIFEST, Int8SpeedRecord, read_manifest

pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")

MODEL = "densenet_bc40_k12"


def test_the_warning_says_by_how_much_int8_is_slower():
    message = not_faster(Int8SpeedRecord(batch=1, calls=7, int8_ms=68.0, float32_ms=33.0))
    assert message == ("int8 is not faster than this backend's float32 engine: 68.0 ms vs 33.0 ms at batch 1 "
                       "(2.1x slower); see docs/int8.md")
    assert "(1.00x slower)" in not_faster(Int8SpeedRecord(8, 7, 2.5, 2.5))  # as fast is not faster
    assert not_faster(Int8SpeedRecord(1, 7, 12.2, 32.9)) is None


def test_the_record_reads_as_one_line_either_way():
    assert speed_text(Int8SpeedRecord(1, 7, 12.2, 32.9)) == (
        "int8 12.2 ms, float32 32.9 ms at batch 1 (medians of 7 calls each, timed at the build): "
        "int8 is 2.7x faster")
    assert speed_text(Int8SpeedRecord(4, 7, 2.57, 2.5)) == (
        "int8 2.57 ms, float32 2.50 ms at batch 4 (medians of 7 calls each, timed at the build): "
        "int8 is 1.03x slower")


@pytest.fixture(scope="module")
def calibration(shared_calibration):
    return shared_calibration


# The same speed check on either backend; onnxruntime's int8 build (its own Q/DQ placement) is the slower one.
# Both with -m slow (17 s for openvino): the default run checks the speed check through the library (``timed``).
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.slow
def test_an_int8_build_records_both_medians_warns_when_not_faster_and_info_shows_them(tmp_path, calibration, backend):
    if not BACKENDS[backend].available().ok:
        pytest.skip(BACKENDS[backend].available().message(backend))
    result = CliRunner().invoke(main, [
        "build", "--model", MODEL, "--backend", backend, "--precision", "int8", "--calibration", str(calibration),
        "--batch", "1:2:2", "--output", str(tmp_path), "--name", "e", "--quiet"])
    assert result.exit_code == 0, result.output
    folder, manifest = read_manifest(tmp_path / "e")
    speed = manifest.int8_speed
    assert speed.batch == 2 and speed.calls == CALLS and speed.int8_ms > 0 and speed.float32_ms > 0
    # Whichever is faster on this machine today, the warning says so exactly when int8 is not.
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warned == ([f"warning: {not_faster(speed)}"] if speed.int8_ms >= speed.float32_ms else [])
    assert f"int8 speed: {speed_text(speed)}" in result.stdout
    # The float32 engine it was timed against was built elsewhere: the folder holds the int8 engine only.
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, *manifest.files])
    info = CliRunner().invoke(main, ["info", str(folder)])
    assert info.exit_code == 0 and f"   int8 speed  {speed_text(speed)}" in info.stdout.splitlines()
    as_json = json.loads(CliRunner().invoke(main, ["info", str(folder), "--json"]).stdout)
    assert as_json["manifest"]["int8_speed"] == {"batch": 2, "calls": CALLS, "int8_ms": speed.int8_ms,
                                                 "float32_ms": speed.float32_ms}


@pytest.fixture(scope="module")
def timed(tmp_path_factory, calibration):
    """An onnxruntime int8 engine built by the library, and the warnings its build gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifact = build(MODEL, backend="onnxruntime", precision="int8", calibration=calibration,
                         output=tmp_path_factory.mktemp("timed"))
    return artifact, caught


def test_the_library_warns_with_its_own_category_exactly_when_int8_is_not_faster(timed):
    artifact, caught = timed
    speed = artifact.manifest.int8_speed
    assert speed.batch == 1 and speed.calls == CALLS
    slower = [str(w.message) for w in caught if issubclass(w.category, Int8NotFaster)]
    assert slower == ([not_faster(speed)] if speed.int8_ms >= speed.float32_ms else [])
    info = CliRunner().invoke(main, ["info", str(artifact.path)])
    assert info.exit_code == 0 and f"   int8 speed  {speed_text(speed)}" in info.stdout.splitlines()


def test_speed_check_false_skips_it_and_float_builds_have_none(small_int8_engine, small_engine):
    skipped = small_int8_engine("onnxruntime")  # built with speed_check=False
    assert skipped.manifest.int8_speed is None
    result = CliRunner().invoke(main, ["info", str(skipped.path)])
    assert result.exit_code == 0 and "int8 speed" not in result.stdout
    assert small_engine("onnxruntime", "fp32").manifest.int8_speed is None


@pytest.mark.parametrize("field", ["batch", "calls", "int8_ms", "float32_ms"])
def test_a_bad_int8_speed_field_is_one_line_naming_it(tmp_path, timed, field, edit_manifest):
    for i, change in enumerate((lambda s: s.pop(field), lambda s: s.update({field: "x"}))):
        folder = tmp_path / f"edited{i}"
        shutil.copytree(timed[0].path, folder)
        edit_manifest(folder, lambda data: change(data["int8_speed"]))
        result = CliRunner().invoke(main, ["info", str(folder)])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.stderr
        assert f"field int8_speed.{field}" in lines[0]


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_a_tensorrt_int8_build_is_timed_against_tensorrts_float32_engine_with_cuda_events(tmp_path, calibration):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifact = build(MODEL, backend="tensorrt", precision="int8", calibration=calibration, batch="1:2:4",
                         format="engine", output=tmp_path)
    speed = artifact.manifest.int8_speed
    assert speed.batch == 2 and speed.calls == CALLS and speed.int8_ms > 0 and speed.float32_ms > 0
    slower = [str(w.message) for w in caught if issubclass(w.category, Int8NotFaster)]
    assert slower == ([not_faster(speed)] if speed.int8_ms >= speed.float32_ms else [])
