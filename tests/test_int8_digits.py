"""INT8 accuracy on real data: the digits DenseNet-BC (tests/data, trained by
examples/digits/train.py) calibrated on its calibration split and judged on its test split."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_trt import load
from densenet_trt.backends import BACKENDS
from densenet_trt.cli import main

pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")
pytest.importorskip("sklearn", reason="the digits come from scikit-learn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
from digits import MEAN, STD, load_split  # noqa: E402

CHECKPOINT = ROOT / "tests" / "data" / "digits_densenet_bc40_k12.pth"
MODEL = "densenet_bc40_k12"


def top1(engine, images, labels):
    predicted = np.concatenate([engine(images[i:i + 100]).argmax(1).numpy() for i in range(0, len(images), 100)])
    return float((predicted == labels).mean())


def test_fake_quantized_top1_is_within_a_point_of_float(digits_calibration):
    report = json.loads((digits_calibration / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["data"]["samples"] == 400 and evaluation["data"]["labels"]
    assert evaluation["float_top1"] >= 0.97
    assert abs(evaluation["int8_top1"] - evaluation["float_top1"]) <= 0.01
    assert report["in_channels"] == 1 and report["data"]["fit_for_accuracy"]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_engine_top1_is_within_a_point_of_float32(digits_fp32_engine, digits_int8_engine, backend):
    if not BACKENDS[backend].available().ok:
        pytest.skip(BACKENDS[backend].available().message(backend))
    images, labels = load_split("test")
    float_engine, int8_engine = digits_fp32_engine(backend), digits_int8_engine(backend)
    manifest = int8_engine.manifest
    assert manifest.calibration.method == "max"
    assert manifest.accuracy.passed and manifest.accuracy.vs_fake_quantized["passed"]
    fp32, int8 = top1(load(float_engine.path), images, labels), top1(load(int8_engine.path), images, labels)
    assert fp32 >= 0.97
    assert abs(int8 - fp32) <= 0.01, (fp32, int8)


def test_verify_reruns_the_int8_gate(digits_calibration, digits_int8_engine):
    calibration, engine = digits_calibration, digits_int8_engine("onnxruntime")
    result = CliRunner().invoke(main, ["verify", str(engine.path), "--samples", "8"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(main, ["info", str(engine.path)]).output
    assert f"calibration  {calibration.resolve()} (max, float: stem)" in shown
    assert (engine.path / "manifest.json").exists()
    assert json.loads((engine.path / "manifest.json").read_text())["preprocessing"] is None


def test_grayscale_engine_records_its_preprocessing(tmp_path):
    result = CliRunner().invoke(main, [
        "build", "--model", MODEL, "--weights", str(CHECKPOINT), "--backend", "onnxruntime",
        "--mean", str(MEAN), "--std", str(STD), "--output", str(tmp_path), "--name", "gray", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "gray" / "manifest.json").read_text())
    assert manifest["in_channels"] == 1
    assert manifest["preprocessing"] == {"resize": 32, "crop": 32, "mean": [MEAN], "std": [STD]}
