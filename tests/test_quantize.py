import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from densenet_trt import DenseNetTRTError, build
from densenet_trt.registry import reference_model
from densenet_trt.capture import capture_qdq_onnx
from densenet_trt.cli import main
from densenet_trt.data import synthetic
from densenet_trt.calibration import QUANTIZERS_FILE, REPORT_FILE, load_calibration
from densenet_trt.quantize import calibrate, quantize_model, resolve_exclude
from densenet_trt.spec import BatchRange
from PIL import Image

pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")

MODEL = "densenet_bc40_k12"


def small_calibration(tmp_path, **kwargs):
    options = dict(data="synthetic", samples=32, batch_size=16, output=tmp_path / "cal", name="c")
    options.update(kwargs)
    return calibrate(MODEL, **options)


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    return small_calibration(tmp_path_factory.mktemp("q"), exclude=["stem"])


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
                     "--skip-bad", "-o", tmp_path / "cal", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["data"]["skipped_bad_files"] == 1 and report["data"]["samples"] == 20
    assert report["data"]["preprocessing"]["crop"] == 32 and report["data"]["classes"] == ["0", "1"]
    assert set(report["evaluation"]) >= {"float_top1", "int8_top1", "agreement"}


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
