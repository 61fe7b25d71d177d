"""INT8 accuracy on real data: the digits DenseNet-BC (tests/data, trained by
examples/digits/train.py) calibrated on its calibration split and judged on its test split."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_trt import build, load
from densenet_trt.backends import BACKENDS
from densenet_trt.cli import main

pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
pytest.importorskip("sklearn", reason="the digits come from scikit-learn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
from digits import MEAN, STD, load_split, write_npz  # noqa: E402

CHECKPOINT = ROOT / "tests" / "data" / "digits_densenet_bc40_k12.pth"
MODEL = "densenet_bc40_k12"


def top1(engine, images, labels):
    predicted = np.concatenate([engine(images[i:i + 100]).argmax(1).numpy() for i in range(0, len(images), 100)])
    return float((predicted == labels).mean())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    for split in ("calibration", "test"):
        write_npz(split, str(folder / f"{split}.npz"))
    return folder


@pytest.fixture(scope="module")
def calibration(work):
    result = CliRunner().invoke(main, [
        "calibrate", "--model", MODEL, "--weights", str(CHECKPOINT), "--data", str(work / "calibration.npz"),
        "--eval-data", str(work / "test.npz"), "--samples", "300", "--batch-size", "50",
        # OpenVINO's INT8 stem convolution strays from ModelOpt's (docs/calibrate.md, INT8 accuracy).
        "--exclude", "stem", "--output", str(work / "cal"), "--name", "max", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert "top-1 on 400 held-out" in result.output
    return work / "cal" / "max"


def test_fake_quantized_top1_is_within_a_point_of_float(calibration):
    report = json.loads((calibration / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["data"]["samples"] == 400 and evaluation["data"]["labels"]
    assert evaluation["float_top1"] >= 0.97
    assert abs(evaluation["int8_top1"] - evaluation["float_top1"]) <= 0.01
    assert report["in_channels"] == 1 and report["data"]["fit_for_accuracy"]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_engine_top1_is_within_a_point_of_float32(work, calibration, backend):
    if not BACKENDS[backend].available().ok:
        pytest.skip(BACKENDS[backend].available().message(backend))
    images, labels = load_split("test")
    float_engine = build(MODEL, weights=CHECKPOINT, backend=backend, batch="1:100:100",
                         output=work / "engines", name=f"{backend}-fp32")
    int8_engine = build(MODEL, weights=CHECKPOINT, backend=backend, precision="int8", calibration=calibration,
                        batch="1:100:100", output=work / "engines", name=f"{backend}-int8", speed_check=False)
    manifest = int8_engine.manifest
    assert manifest.calibration.method == "max"
    assert manifest.accuracy.passed and manifest.accuracy.vs_fake_quantized["passed"]
    fp32, int8 = top1(load(float_engine.path), images, labels), top1(load(int8_engine.path), images, labels)
    assert fp32 >= 0.97
    assert abs(int8 - fp32) <= 0.01, (fp32, int8)


def test_verify_reruns_the_int8_gate(work, calibration):
    engine = build(MODEL, weights=CHECKPOINT, backend="onnxruntime", precision="int8", calibration=calibration,
                   batch="1:4:8", output=work / "engines", name="verify-int8", speed_check=False)
    result = CliRunner().invoke(main, ["verify", str(engine.path), "--samples", "8"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(main, ["info", str(engine.path)]).output
    assert f"calibration  {calibration.resolve()} (max, float: stem)" in shown
    assert (engine.path / "manifest.json").exists()
    assert json.loads((engine.path / "manifest.json").read_text())["preprocessing"] is None


def test_grayscale_engine_records_its_preprocessing(work):
    result = CliRunner().invoke(main, [
        "build", "--model", MODEL, "--weights", str(CHECKPOINT), "--backend", "onnxruntime",
        "--mean", str(MEAN), "--std", str(STD), "--output", str(work / "engines"), "--name", "gray", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    manifest = json.loads((work / "engines" / "gray" / "manifest.json").read_text())
    assert manifest["in_channels"] == 1
    assert manifest["preprocessing"] == {"resize": 32, "crop": 32, "mean": [MEAN], "std": [STD]}
