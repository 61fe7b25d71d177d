"""Bad calibration folders and calibrate options that do nothing (issue 25): each is one line on
stderr, exit status 1, no traceback, nothing created or changed (tests/cli/test_bad_inputs.py's
``refused``). The folders are copies of the run's shared calibration (densenet_bc40_k12, random
weights, the stem in float), edited as a user's hand or another program would."""

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import torch

from densenet_trt import create_model
from helpers import write_report
from test_bad_inputs import refused

pytest.importorskip("modelopt", reason="INT8 calibration needs nvidia-modelopt (densenet-trt[quantize])")

MODEL = ["--model", "densenet_bc40_k12"]
BUILD = ["build", *MODEL, "--precision", "int8", "--calibration", "calibration/c", "--backend", "onnxruntime",
         "-o", "engines", "-q", "--no-speed-check"]
LAYER = ["--layers", "features.denseblock1.denselayer1.conv1"]


@pytest.fixture
def work(tmp_path, shared_calibration):
    """A folder with a copy of the shared calibration (``calibration/c``), another model's
    checkpoint, this model's with other weights, and held-out data."""
    shutil.copytree(shared_calibration, tmp_path / "calibration" / "c")
    torch.save(create_model("densenet40_k12").state_dict(), tmp_path / "other.pth")
    torch.save(create_model("densenet_bc40_k12").state_dict(), tmp_path / "same-model.pth")
    np.savez(tmp_path / "data.npz", images=np.zeros((8, 3, 32, 32), np.float32))
    return tmp_path


def report_of(work) -> dict:
    return json.loads((work / "calibration" / "c" / "report.json").read_text())


# --- the report is tamper-evident: a digest, and what an edit that computes it again must keep ----

EDITS = {
    "exclude": lambda r: r.update(exclude=[]),
    "method": lambda r: r.update(method="entropy"),
    "tolerance": lambda r: r["gate"]["tolerance"].update(atol=100.0),
    "onnxruntime tolerance": lambda r: r["onnxruntime"]["gate"]["tolerance"].update(min_cosine=0.5),
    "layers in float": lambda r: r["layers"].update(float=[], quantized=sorted(r["layers"]["quantized"] +
                                                                               r["layers"]["float"])),
}


@pytest.mark.parametrize("edit", list(EDITS.values()), ids=list(EDITS))
def test_a_report_edited_by_hand_is_refused_by_its_digest(work, edit):
    report = report_of(work)
    edit(report)
    (work / "calibration" / "c" / "report.json").write_text(json.dumps(report))
    refused(BUILD, work, "report.json was changed after calibration (its digest does not match its content); "
                         "calibrate again")


@pytest.mark.parametrize("edit, message", [
    (EDITS["exclude"], "field exclude (nothing) keeps 0 layers in float, not the 1 of field layers.float"),
    (EDITS["method"], "field method ('entropy') disagrees with its record of percentile and quantization"),
    (EDITS["tolerance"], "field gate.tolerance is looser in atol than its distance from float"),
    (EDITS["onnxruntime tolerance"], "field onnxruntime.gate.tolerance is looser in min_cosine than its distance"),
    (EDITS["layers in float"], "field exclude (stem) keeps 1 layers in float, not the 0 of field layers.float"),
], ids=[name for name in EDITS])
def test_a_report_edited_with_its_digest_made_again_is_refused_by_what_it_says(work, edit, message):
    report = report_of(work)
    edit(report)
    write_report(work / "calibration" / "c", report)
    refused(BUILD, work, message)


def test_a_report_without_a_digest_is_refused_saying_to_calibrate_again(work):
    report = report_of(work)
    del report["digest"]
    (work / "calibration" / "c" / "report.json").write_text(json.dumps(report))
    refused(BUILD, work, "report.json: field digest is missing; calibrate again")


def test_a_report_of_the_version_before_the_digest_is_refused_saying_to_calibrate_again(work):
    report = report_of(work)
    report["schema_version"] = 2
    write_report(work / "calibration" / "c", report)
    refused(BUILD, work, "has schema version 2; this densenet-trt reads version 3: calibrate again")


# --- ONNX Runtime's ranges: finite, low <= high, when read ---------------------------------------

@pytest.mark.parametrize("bad", [[math.nan, math.nan], [0.0, math.inf], [-math.inf, 1.0], [2.0, 1.0]],
                         ids=["nan", "inf", "-inf", "low-above-high"])
def test_onnxruntime_ranges_that_are_not_ranges_are_refused(work, bad):
    folder = work / "calibration" / "c"
    ranges = json.loads((folder / "onnxruntime_ranges.json").read_text())
    first = next(iter(ranges["ranges"]))
    ranges["ranges"][first] = bad
    (folder / "onnxruntime_ranges.json").write_text(json.dumps(ranges))
    report = report_of(work)
    report["files"]["onnxruntime_ranges.json"] = hashlib.sha256((folder / "onnxruntime_ranges.json").read_bytes()).hexdigest()
    write_report(folder, report)
    refused(BUILD, work, f"onnxruntime_ranges.json has 1 ranges that are not finite with low <= high (e.g. {first}:")


# --- calibrate: options that do nothing, and an exclusion that leaves nothing -----------------------

CALIBRATE = ["calibrate", *MODEL, "-q", "--samples", "16", "--batch-size", "16", "--no-onnxruntime", "-o", "out"]
DOES_NOTHING = {
    "eval-samples without eval-data": (["--synthetic", "--eval-samples", "5"],
                                       "--eval-samples does nothing without --eval-data: give --eval-data too, "
                                       "or leave --eval-samples out"),
    "max-float without max-drop": (["--synthetic", "--max-float", "3"], "--max-float does nothing without --max-drop"),
    "percentile with method max": (["--synthetic", "--method", "max", "--percentile", "50"],
                                   "--percentile does nothing without --method percentile"),
    "percentile at its default value": (["--synthetic", "--percentile", "99.99"],
                                        "--percentile does nothing without --method percentile"),
    "sensitivity without eval-data": (["--synthetic", "--sensitivity"], "--sensitivity does nothing without --eval-data"),
    "empty data path": (["--data", ""], "data path '' is empty (it is not the current folder)"),
    "empty eval-data path": (["--synthetic", "--eval-data", ""], "data path '' is empty"),
    "exclude every layer": (["--synthetic", "--exclude", "*"],
                            "--exclude * keeps all 42 quantized layers in float: excluding every layer leaves nothing "
                            "to quantize"),
    "exclude every layer in two patterns": (["--synthetic", "--exclude", "features.*", "--exclude", "classifier"],
                                            "excluding every layer leaves nothing to quantize"),
}


@pytest.mark.parametrize("args, message", list(DOES_NOTHING.values()), ids=list(DOES_NOTHING))
def test_calibrate_refuses_options_that_do_nothing(work, args, message):
    refused([*CALIBRATE, *args], work, message)
    assert not (work / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--synthetic", "--method", "percentile", "--percentile", "50", "--samples", "4"], "fewer than one batch"),
    (["--synthetic", "--eval-data", "gone.npz", "--eval-samples", "5"], "'gone.npz' does not exist"),
    (["--synthetic", "--eval-data", "gone.npz", "--max-drop", "1", "--max-float", "2"], "'gone.npz' does not exist"),
], ids=["percentile", "eval-samples", "max-float"])
def test_an_option_given_with_what_it_applies_with_passes_the_rule(work, args, message):
    """Each is refused later, for another reason: the rule let it through."""
    refused([*CALIBRATE, *args], work, message)


# --- sensitivity: a checkpoint that is not the calibrated one --------------------------------------

@pytest.mark.parametrize("checkpoint", ["other.pth", "same-model.pth"], ids=["another-architecture", "other-weights"])
def test_sensitivity_refuses_a_checkpoint_other_than_the_calibrated_one(work, checkpoint):
    refused(["sensitivity", "calibration/c", "--eval-data", "data.npz", *LAYER, "-q", "--weights", checkpoint], work,
            f"the calibration calibration/c was made for other weights (random, seed 0) than these ({checkpoint}, "
            "sha256 ")
