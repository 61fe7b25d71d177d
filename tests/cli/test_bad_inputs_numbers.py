"""Numbers (issue 25): every number a user gives is bounded where it is parsed (threads, seeds,
workspace, percentages: the command line's types in cli/options.py, exit status 2 as Click's
other option errors), memory a count would need is refused before allocating
(machine.check_images_memory, memory.check_build_memory), numbers read from a manifest are
bounded as they are read, a manifest that disagrees with its model file is one error, and
outputs that are not finite are an error."""

import pytest
import torch

from conftest import SMALL
from densenet_trt.model.registry import create_model
from densenet_trt.machine import MAX_THREADS
from test_bad_inputs import refused
from test_bad_inputs_commands import ENGINE, base, work  # noqa: F401 - fixtures

BUILD = ["build", "--model", "densenet_bc40_k12", "--backend", "torchscript", "-q"]
PROFILE = ["profile", ENGINE, "--iterations", "2", "--warmup-iterations", "0", "--gap", "0", "-q"]
CALIBRATE = ["calibrate", "--model", "densenet_bc40_k12", "-q", "--synthetic", "--batch-size", "16",
             "--no-onnxruntime"]


PARSED = {
    "build threads huge": (BUILD + ["--threads", "100000"], f"100000 is not in the range 1<=x<={MAX_THREADS}"),
    "profile threads huge": (PROFILE + ["--threads", "100000"], f"100000 is not in the range 1<=x<={MAX_THREADS}"),
    "build workspace inf": (BUILD + ["--workspace-gb", "inf"], "is not in the range"),
    "build workspace nan": (BUILD + ["--workspace-gb", "nan"], "'nan' is not a finite number"),
    "calibrate percentile nan": (CALIBRATE + ["--method", "percentile", "--percentile", "nan"],
                                 "'nan' is not a finite number"),
    "calibrate max-drop nan": (CALIBRATE + ["--max-drop", "nan"], "'nan' is not a finite number"),
    "calibrate seed negative": (CALIBRATE + ["--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    "sensitivity seed negative": (["sensitivity", "calibration/c", "--eval-data", "data.npz", "--seed", "-1"],
                                  "-1 is not in the range 0<=x<=4294967295"),
    "verify seed 2**64": (["verify", ENGINE, "--seed", str(2**64), "-q"], "is not in the range 0<=x<=4294967295"),
    "compare seed negative": (["compare", ENGINE, "--seed", "-5", "-q"], "-5 is not in the range"),
}


@pytest.mark.parametrize("args, message", list(PARSED.values()), ids=list(PARSED))
def test_numbers_out_of_bounds_are_refused_where_parsed(work, args, message):
    refused(args, work, message, status=2)


MEMORY = {
    "calibrate petabytes of samples": (CALIBRATE + ["--samples", "1000000000000"],
                                       "--samples 1000000000000 images of 3x32x32 would take"),
    "compare a billion samples": (["compare", ENGINE, "--samples", "1000000000", "-q"],
                                  "--samples 1000000000 images of 3x32x32 would take"),
    "verify a billion samples": (["verify", ENGINE, "--samples", "1000000000", "-q"], "images of 3x32x32 would take"),
    "export a billion classes": (["export", "--model", "densenet_bc40_k12", "-q", "--format", "onnx",
                                  "--num-classes", "1000000000", "-o", "x.onnx"], "1,000,000,000-class weights"),
}


@pytest.mark.parametrize("args, message", list(MEMORY.values()), ids=list(MEMORY))
def test_counts_that_would_not_fit_in_memory_are_refused_before_allocating(work, args, message):
    refused(args, work, message)


def _set(field, value):
    def change(data):
        *path, last = field.split(".")
        target = data
        for key in path:
            target = target[key]
        target[last] = value
    return change


MANIFESTS = {
    "threads a million": ("threads", 1_000_000, ["verify", ENGINE, "-q", "--samples", "4"], "must be at most 1024"),
    "random-weights seed 2**64": ("model.seed", 2**64, ["verify", ENGINE, "-q", "--samples", "4"],
                                  "must be at most 4294967295"),
    "std subnormal": ("preprocessing.std", [1e-310] * 3, ["predict", ENGINE, "images/a.png", "--json"],
                      "std values must be at least 1e-06"),
    "resize 100000": ("preprocessing.resize", 100_000, ["predict", ENGINE, "images/a.png", "--json"],
                      "possible decompression bomb"),
    "image size 64, graph 32": ("image_size", 64, ["verify", ENGINE, "-q", "--samples", "4"],
                                "the manifest does not match the engine's model file"),
    "1000 classes, graph 10": ("model.num_classes", 1000, ["verify", ENGINE, "-q", "--samples", "4"],
                               "the manifest does not match the engine's model file"),
    "fp16 on onnxruntime's cpu": ("precision", "fp16", ["verify", ENGINE, "-q", "--samples", "4"],
                                  "which backend onnxruntime does not build"),
}


@pytest.mark.parametrize("field, value, args, message", list(MANIFESTS.values()), ids=list(MANIFESTS))
def test_manifest_numbers_and_fields_that_disagree_with_the_engine_are_refused(work, edit_manifest, field, value,
                                                                             args, message):
    edit_manifest(work / ENGINE, _set(field, value))
    refused(args, work, message)


def test_predict_refuses_logits_that_are_not_finite(work):
    """A checkpoint with a negative BatchNorm running variance, built without the gate: its
    logits are NaN, which predict refuses instead of printing NaN probabilities."""
    from densenet_trt.engine.build import build

    state = create_model("densenet_bc100_k12", **SMALL).state_dict()
    key = "features.denseblock1.denselayer1.norm1.running_var"
    state[key] = -torch.ones_like(state[key])
    torch.save(state, work / "nan.pth")
    build("densenet_bc100_k12", backend="onnxruntime", batch="1:2:4", overrides=SMALL, weights=work / "nan.pth",
          output=work / "engines", name="nan", verify=False)
    refused(["predict", "engines/nan", "images/a.png", "--json"], work, "gave non-finite outputs (NaN or Inf)")
