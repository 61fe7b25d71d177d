import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from densenet_trt import DenseNetTRTError, build
from densenet_trt.model.registry import reference_model
from densenet_trt.engine.capture import capture_qdq_onnx
from densenet_trt.cli import main
from densenet_trt.model.data import synthetic
from densenet_trt.int8.calibration import GATE_FILE, QUANTIZERS_FILE, REPORT_FILE, load_calibration
from densenet_trt.model.data import Preprocessing
from densenet_trt.deploy.predict import classify
from densenet_trt.int8.quantize import calibrate, quantize_model, resolve_exclude
from densenet_trt.engine.spec import BatchRange
from PIL import Image

from helpers import write_report

pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")

MODEL = "densenet_bc40_k12"
# The grayscale digits model (examples/digits) and its own mean and std: no preset fits it.
CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "digits_densenet_bc40_k12.pth"
DIGITS = Preprocessing(32, 32, (0.305,), (0.323,))


def small_calibration(tmp_path, **kwargs):
    """ModelOpt's calibration only: none of these tests builds an onnxruntime int8 engine."""
    options = dict(data="synthetic", samples=32, batch_size=16, output=tmp_path / "cal", name="c", onnxruntime=False)
    options.update(kwargs)
    return calibrate(MODEL, **options)


@pytest.fixture(scope="module")
def cal(shared_calibration):
    """small_calibration(exclude=["stem"]): the run's shared calibration (read only)."""
    return load_calibration(shared_calibration)


def test_report_says_what_was_calibrated(cal):
    r = json.loads((cal.path / REPORT_FILE).read_text())
    assert r["model"]["name"] == MODEL and r["model"]["weights"] is None
    assert r["method"] == "max" and r["image_size"] == 32 and r["in_channels"] == 3
    assert r["data"]["kind"] == "synthetic" and r["data"]["fit_for_accuracy"] is False
    assert r["data"]["used"] == 32 and len(r["data"]["sha256"]) == 64
    assert r["layers"]["float"] == ["features.conv0"]
    assert "classifier" in r["layers"]["quantized"] and len(r["layers"]["quantized"]) == 41
    act = r["amax"]["classifier.input_quantizer"]
    weight = r["amax"]["classifier.weight_quantizer"]
    assert act > 0 and weight["channels"] == 10 and 0 < weight["min"] <= weight["max"]
    assert not any(name.startswith("features.conv0.") for name in r["amax"])
    assert r["gate"]["tolerance"]["atol"] >= 2 * r["gate"]["fake_quant_vs_float"]["max_abs"]
    assert r["evaluation"] is None
    assert r["preprocessing"] is None  # synthetic data comes preprocessed


def test_restored_quantizers_reproduce_the_calibrated_model(cal):
    net = reference_model(MODEL, None, None, 0, {})
    data = synthetic(32, 3, 32)
    batches = lambda: (torch.from_numpy(data.images[i:i + 16]) for i in (0, 16))  # noqa: E731
    fresh = quantize_model(net, "max", ["features.conv0"], batches)
    restored = load_calibration(cal.path).quantized_model(net)
    x = cal.gate_inputs()
    with torch.no_grad():
        assert torch.equal(fresh(x), restored(x))
        assert not torch.equal(net(x), restored(x))


def test_same_inputs_give_the_same_calibration(tmp_path, cal):
    again = small_calibration(tmp_path, exclude=["stem"])
    assert again.report["amax"] == cal.report["amax"]
    assert again.report["data"]["sha256"] == cal.report["data"]["sha256"]


def test_percentile_cuts_activation_ranges(tmp_path, cal):
    other = small_calibration(tmp_path, method="percentile", percentile=99.0, exclude=["stem"])
    assert other.report["method"] == "percentile" and other.report["percentile"] == 99.0
    name = "features.denseblock1.denselayer1.conv1.input_quantizer"
    assert other.report["amax"][name] < cal.report["amax"][name]  # the max is the widest range
    weight = "features.denseblock1.denselayer1.conv1.weight_quantizer"
    assert other.report["amax"][weight] == cal.report["amax"][weight]


def test_mse_searches_weight_ranges(tmp_path, cal):
    other = small_calibration(tmp_path, method="mse", exclude=["stem"])
    name = "features.denseblock1.denselayer1.conv1.input_quantizer"
    weight = "features.denseblock1.denselayer1.conv1.weight_quantizer"
    assert other.report["amax"][name] == cal.report["amax"][name]
    assert other.report["amax"][weight] != cal.report["amax"][weight]
    assert other.report["weights_quantization"] == "int8 per output channel, mse"


def test_qdq_onnx_has_quantize_dequantize_pairs(cal):
    net = reference_model(MODEL, None, None, 0, {})
    proto = capture_qdq_onnx(cal.quantized_model(net), BatchRange(1, 2, 4), 32)
    ops = [n.op_type for n in proto.graph.node]
    # Input and weight of 38 convolutions and the classifier (the stem stays float), two pools.
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") == 2 * 39 + 2
    assert [i.name for i in proto.graph.input] == ["input"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(samples=8), "8 samples, fewer than one batch of 16"),
        (dict(exclude=["features.nothing*"]), "exclude='features.nothing\\*' matches no quantized layer"),
        (dict(method="kl"), "unknown calibration method 'kl'"),
        (dict(method="percentile", percentile=0), "percentile must be in \\(0, 100\\]"),
        (dict(data="missing.npz"), "does not exist"),
    ],
)
def test_bad_calibration_requests_write_nothing(tmp_path, kwargs, message):
    with pytest.raises(DenseNetTRTError, match=message):
        small_calibration(tmp_path, **kwargs)
    assert not (tmp_path / "cal" / "c").exists()


def test_wrong_data_for_the_model(tmp_path):
    np.savez(tmp_path / "gray.npz", images=np.zeros((32, 1, 32, 32), np.float32))
    with pytest.raises(DenseNetTRTError, match="images of 1x32x32 .* takes 3x32x32"):
        small_calibration(tmp_path, data=tmp_path / "gray.npz")
    np.savez(tmp_path / "labels.npz", images=np.zeros((32, 3, 32, 32), np.float32), labels=np.full(32, 11))
    with pytest.raises(DenseNetTRTError, match="labels from 11 to 11, but the model has 10 classes"):
        small_calibration(tmp_path, data=tmp_path / "labels.npz")


def test_existing_calibration_needs_force(tmp_path):
    small_calibration(tmp_path)
    with pytest.raises(DenseNetTRTError, match="exists; pass force=True"):
        small_calibration(tmp_path)
    small_calibration(tmp_path, force=True)


def test_a_calibration_without_onnxruntime_ranges_refuses_onnxruntime_int8_builds_in_one_line(tmp_path):
    cal = small_calibration(tmp_path)
    message = (f"the calibration {cal.path} has no ONNX Runtime ranges (left out on request (--no-onnxruntime) when "
               "it was made), which onnxruntime int8 engines are placed with; calibrate again with "
               "densenet-trt[onnx] installed, without --no-onnxruntime")
    with pytest.raises(DenseNetTRTError, match=f"^{re.escape(message)}$"):
        build(MODEL, precision="int8", calibration=cal.path, backend="onnxruntime", output=tmp_path / "engines")
    assert not (tmp_path / "engines").exists() or list((tmp_path / "engines").iterdir()) == []


def test_damaged_calibrations_are_refused(tmp_path):
    cal = small_calibration(tmp_path)
    with open(cal.path / QUANTIZERS_FILE, "ab") as f:
        f.write(b"x")
    with pytest.raises(DenseNetTRTError, match="quantizers.pt does not match its recorded sha256"):
        load_calibration(cal.path)
    (cal.path / QUANTIZERS_FILE).unlink()
    with pytest.raises(DenseNetTRTError, match="quantizers.pt is missing"):
        load_calibration(cal.path)
    (cal.path / REPORT_FILE).write_text("{")
    with pytest.raises(DenseNetTRTError, match="report.json is corrupt"):
        load_calibration(cal.path)
    with pytest.raises(DenseNetTRTError, match="is not a calibration folder"):
        load_calibration(tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="densenet_bc100_k12"), "was made for densenet_bc40_k12"),
        (dict(image_size=40), "was made for 3x32x32 inputs, not 3x40x40"),
        (dict(seed=1), "random weights of seed 0, not 1"),
    ],
)
def test_a_calibration_for_another_model_is_refused(tmp_path, cal, kwargs, message):
    options = dict(model=MODEL, precision="int8", calibration=cal.path, backend="onnxruntime", output=tmp_path)
    options.update(kwargs)
    with pytest.raises(DenseNetTRTError, match=message):
        build(**options)
    assert list(tmp_path.iterdir()) == []


def test_exclude_aliases():
    net = reference_model(MODEL, None, None, 0, {})
    assert resolve_exclude(net, ["stem", "classifier", "features.conv0"]) == ["features.conv0", "classifier"]
    assert len(resolve_exclude(net, ["features.transition*"])) == 4  # two convs, two pools


def run_cli(*args):
    return CliRunner().invoke(main, ["calibrate", "--model", MODEL, *map(str, args)])


def test_cli_calibrates_an_image_folder_skipping_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        folder = tmp_path / "images" / str(i % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (tmp_path / "images" / "0" / "bad.png").write_bytes(b"\x89PNG broken")
    result = run_cli("--data", tmp_path / "images", "--batch-size", "8", "-o", tmp_path / "cal", "--quiet")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "unreadable image file(s)" in result.output and "bad.png" in result.output
    assert not (tmp_path / "cal").exists() or not any((tmp_path / "cal").iterdir())
    result = run_cli("--data", tmp_path / "images", "--eval-data", tmp_path / "images", "--batch-size", "8",
                     "--skip-bad", "--no-onnxruntime", "-o", tmp_path / "cal", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["data"]["skipped_bad_files"] == 1 and report["data"]["samples"] == 20
    assert report["data"]["preprocessing"]["crop"] == 32 and report["data"]["classes"] == ["0", "1"]
    assert set(report["evaluation"]) >= {"float_top1", "int8_top1", "agreement"}
    assert report["onnxruntime"] == {"ranges": None, "reason": "left out on request (--no-onnxruntime) when it was made"}
    assert "onnxruntime_int8_top1" not in report["evaluation"]


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give --data PATH, or --synthetic"),
        (("--synthetic", "--data", "x.npz"), "give --data PATH, or --synthetic"),
        (("--data", "{tmp}"), "has no image files"),
        (("--data", "{tmp}/nan.npz"), "NaN or Inf values"),
        (("--synthetic", "--samples", "4"), "4 samples, fewer than one batch of 32"),
        (("--synthetic", "--exclude", "nothing"), "matches no quantized layer"),
        (("--data", "{tmp}/gray.npz"), "images of 1x32x32 .* takes 3x32x32"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    np.savez(tmp_path / "nan.npz", images=np.full((4, 3, 32, 32), np.inf, np.float32))
    np.savez(tmp_path / "gray.npz", images=np.zeros((40, 1, 32, 32), np.float32))
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], "-o", tmp_path / "cal", "--quiet")
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "cal").exists() or not any((tmp_path / "cal").iterdir())


# --- the preprocessing a calibration was made with goes into the engine --------------------------


@pytest.fixture(scope="module")
def folder_calibration(tmp_path_factory):
    """The digits model calibrated on a folder of 16 tiny grayscale PNGs, with its own mean and std."""
    work = tmp_path_factory.mktemp("folder")
    (work / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(work / "images" / f"{i:02d}.png")
    cal = calibrate(MODEL, weights=CHECKPOINT, data=work / "images", preprocess=DIGITS, samples=16, batch_size=8,
                    exclude=["stem"], output=work / "cal", name="c", onnxruntime=False)
    return work / "images", cal


def test_a_calibration_from_an_image_folder_gives_its_preprocessing_to_the_engine(folder_calibration, tmp_path):
    images, cal = folder_calibration
    assert cal.report["preprocessing"] == DIGITS.as_dict()
    assert load_calibration(cal.path).preprocessing == DIGITS
    artifact = build(MODEL, weights=CHECKPOINT, precision="int8", calibration=cal.path, backend="openvino",
                     batch="1:4:4", output=tmp_path, speed_check=False)
    assert artifact.manifest.preprocessing == DIGITS
    predictions = classify(artifact.path, [images], top_k=1)
    assert len(predictions) == 16 and not any(p.random_weights for p in predictions)
    result = CliRunner().invoke(main, ["predict", str(artifact.path), str(images / "00.png"), "--top-k", "1"])
    assert result.exit_code == 0 and result.stderr.splitlines()[0].startswith("classifying 1 image(s)"), result.output


def test_a_build_preprocessing_other_than_the_calibrations_is_refused(folder_calibration, tmp_path):
    _, cal = folder_calibration
    with pytest.raises(DenseNetTRTError, match=re.escape(
            "the preprocessing asked for (resize 32, crop 32, mean [0.5], std [0.5]) is not the one "
            f"{cal.path} was calibrated with (resize 32, crop 32, mean [0.305], std [0.323]); leave out "
            "preprocess=PRESET and mean=M std=S to use the calibration's, or calibrate with these")):
        build(MODEL, weights=CHECKPOINT, precision="int8", calibration=cal.path, backend="openvino",
              output=tmp_path, preprocess=Preprocessing(32, 32, (0.5,), (0.5,)))
    assert list(tmp_path.iterdir()) == []


# --- calibration folders whose files were replaced, their sha256 updated to match ---------------


def replaced(cal, into: Path, name: str, content: bytes) -> Path:
    """A copy of calibration ``cal`` with file ``name`` replaced by ``content`` and the report's
    sha256 of it updated, so that the checksum passes and only the content can be refused."""
    folder = shutil.copytree(cal.path, into)
    (folder / name).write_bytes(content)
    report = json.loads((folder / REPORT_FILE).read_text())
    report["files"][name] = hashlib.sha256(content).hexdigest()
    write_report(folder, report)
    return folder


@pytest.mark.parametrize("kind", ["random bytes", "half the file", "another torch file", "another model's state"])
def test_a_quantizer_state_that_is_not_one_is_refused_naming_the_file(cal, tmp_path, kind):
    original = (cal.path / QUANTIZERS_FILE).read_bytes()
    if kind == "another torch file":
        torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    elif kind == "another model's state":
        other = calibrate("densenet_bc100_k12", data="synthetic", samples=8, batch_size=8, output=tmp_path, name="o",
                          onnxruntime=False)
        shutil.copy(other.path / QUANTIZERS_FILE, tmp_path / "other.pt")
    content = {"random bytes": os.urandom(4096), "half the file": original[:len(original) // 2]}.get(kind)
    folder = replaced(cal, tmp_path / "c", QUANTIZERS_FILE, content or (tmp_path / "other.pt").read_bytes())
    message = (f"{folder / QUANTIZERS_FILE} is not a calibration state (ModelOpt's quantizer state that calibrate "
               "writes) for this model; calibrate again")
    with pytest.raises(DenseNetTRTError, match=f"^{re.escape(message)}$"):
        load_calibration(folder).quantized_model(reference_model(MODEL, None, None, 0, {}))
    with pytest.raises(DenseNetTRTError, match=re.escape(message)):
        build(MODEL, precision="int8", calibration=folder, backend="onnxruntime", output=tmp_path / "engines")
    assert not (tmp_path / "engines").exists()


def gate_archive(value: float) -> bytes:
    with io.BytesIO() as buffer:
        np.savez(buffer, images=np.full((8, 3, 32, 32), value, np.float32))
        return buffer.getvalue()


def test_gate_inputs_that_are_not_finite_are_refused_when_the_calibration_is_loaded(cal, tmp_path):
    folder = replaced(cal, tmp_path / "c", GATE_FILE, gate_archive(np.nan))
    with pytest.raises(DenseNetTRTError, match="gate.npz has NaN or Inf values in 8 of its 8 gate inputs; the engine's "
                                               "accuracy gate cannot run on them: calibrate again"):
        load_calibration(folder)


def test_non_finite_gate_outputs_are_said_to_be_so_not_blamed_on_the_int8_arithmetic(cal, tmp_path):
    """Finite gate inputs beyond what float32 arithmetic can take: eager float32's logits overflow."""
    folder = replaced(cal, tmp_path / "c", GATE_FILE, gate_archive(3e38))
    with pytest.raises(DenseNetTRTError, match=r"gave non-finite outputs \(NaN or Inf\) at batch 1 on the gate "
                                               r"inputs of .*: non-finite inputs or weights, or values beyond "
                                               r"float32's range, are the likely cause") as error:
        build(MODEL, precision="int8", calibration=folder, backend="onnxruntime", output=tmp_path / "engines")
    assert "eager float32 PyTorch" in str(error.value) and "INT8 arithmetic" not in str(error.value)
    assert list((tmp_path / "engines").iterdir()) == []


def test_a_synthetic_int8_build_says_so_and_its_gate_says_what_it_did_not_check(shared_calibration, tmp_path,
                                                                                 edit_manifest):
    """An int8 engine of random weights from a --synthetic calibration printed `top-1 100%` of no
    decisive sample, a gate "over 16 samples" of 8 inputs repeated, nothing of the synthetic data
    in build, info or profile, and `info` said `accuracy passed the gate` (issue 23)."""
    from densenet_trt.engine.load import load
    from densenet_trt.engine.manifest import SYNTHETIC_CALIBRATION
    from densenet_trt.profiling.profiler import _engine_info

    built = CliRunner().invoke(main, ["build", "--model", MODEL, "--backend", "onnxruntime", "--precision", "int8",
                                      "--calibration", str(shared_calibration), "--batch", "1:8:16",
                                      "--output", str(tmp_path), "--name", "e", "--no-speed-check"])
    assert built.exit_code == 0, built.output
    assert f"int8 from calibration {shared_calibration} (max); {SYNTHETIC_CALIBRATION}" in built.output
    assert "top-1 not checked (0 of 16 samples decisive) over 16 samples (8 distinct inputs, repeated)" in built.output
    summary = built.output.splitlines()[-2]
    assert "batch 16 max abs" in summary and "top-1 not checked (0 of 16 samples decisive) (8 distinct inputs, repeated)" in summary
    assert summary.endswith(f"; {SYNTHETIC_CALIBRATION}") and "100%" not in summary
    engine = load(tmp_path / "e")
    assert engine.manifest.calibration.synthetic is True
    assert [(r["batch"], r["decisive_top1"], r["distinct_inputs"]) for r in engine.manifest.accuracy.results] == [
        (1, None, 1), (8, None, 8), (16, None, 8)]
    info = CliRunner().invoke(main, ["info", str(tmp_path / "e")]).output
    assert (f"accuracy  passed the gate; top-1 not checked at batch 1, 8, 16 (0 of 1, 8, 16 samples decisive); "
            f"{SYNTHETIC_CALIBRATION}\n") in info
    assert f"(max, float: stem); {SYNTHETIC_CALIBRATION}\n" in info
    assert f"int8 from a {SYNTHETIC_CALIBRATION}" in _engine_info(engine, 0.1).notes

    def version_3(data):
        data["schema_version"] = 3
        del data["calibration"]["synthetic"]

    edit_manifest(tmp_path / "e", version_3)
    assert load(tmp_path / "e").manifest.calibration.synthetic is None  # not recorded then


def test_calibrate_gives_a_verdict_beside_its_distances(tmp_path):
    """Calibrate printed `max abs 4.65 (allowed 0.00144) ... cosine 0.767746, top-1 87.5%`: the
    fp32 tolerance, which nothing is gated with, and no verdict (issue 23)."""
    lines = []
    cal = small_calibration(tmp_path, onnxruntime=True, progress=lines.append)
    tolerance = cal.tolerance
    gate = [line for line in lines if "against eager float32 on the 8 gate inputs" in line]
    assert [line.split(" against")[0] for line in gate] == ["ModelOpt's placement", "ONNX Runtime's placement"]
    assert all("; not a gate, for information: int8 builds from it must stay within max abs" in line
               and "allowed" not in line for line in gate)
    assert f"cosine {tolerance.min_cosine:.6f} of eager float32" in gate[0]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_calibrate_and_build_count_int8_layers_the_same_way(small_int8_engine, cal, backend):
    """densenet121: calibrate said `124 layers quantized` (120 convolutions, the classifier, 3
    average pools) and build `125 of 125` (OpenVINO's Pooling i8: 4, the max-pooling stem with no
    quantizer of its own among them); both now count layers with weights apart from pooling (issue 23)."""
    from densenet_trt.int8.calibration import layer_counts
    from densenet_trt.engine.load import load

    r = cal.report
    counted = layer_counts(r["layers"]["quantized"], r["layers"]["float"], r["amax"])
    assert counted == "41 layers int8 (39 convolution and linear, 2 average pooling), 1 kept in float"
    text = load(small_int8_engine(backend).path).runtime.layer_precisions().text()
    assert text.startswith("41 of 42 compute layers in int8 (39 convolution and linear, 2 pooling), 1 in float"), text
