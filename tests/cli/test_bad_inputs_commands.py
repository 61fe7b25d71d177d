"""Bad input to every command that reads an engine, a checkpoint or data, against one small
engine built once: each is one line on stderr, exit status 1, no traceback, and nothing under
the working folder created or changed (tests/cli/test_bad_inputs.py has the checks)."""

import json
import shutil

import pytest
import torch
from PIL import Image

from densenet_trt import create_model
from test_bad_inputs import refused

MODEL = ["--model", "densenet_bc100_k12"]


@pytest.fixture(scope="module")
def base(tmp_path_factory, shared_engine):
    """An engine (batch 1:2:4), a checkpoint of another model, images and a labels file."""
    folder = tmp_path_factory.mktemp("base")
    shutil.copytree(shared_engine.path, folder / "engines" / "e")
    torch.save(create_model("densenet40_k12").state_dict(), folder / "other.pth")
    (folder / "images").mkdir()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(folder / "images" / "a.png")
    (folder / "not-an-image.png").write_bytes(b"not a png")
    (folder / "labels.txt").write_text("\n".join(f"class {i}" for i in range(10)))
    (folder / "three-labels.txt").write_text("a\nb\nc\n")
    (folder / "empty").mkdir()
    (folder / "text.json").write_text("{}")
    return folder


@pytest.fixture
def work(base, tmp_path):
    """A fresh copy of ``base`` for a test to be refused in."""
    shutil.copytree(base, tmp_path / "w")
    return tmp_path / "w"


ENGINE = "engines/e"
CASES = {
    # build, export, calibrate: refused before any work
    "build unknown model": (["build", "--model", "densenet12", "-q"], "unknown model 'densenet12'"),
    "build batch out of order": (["build", *MODEL, "--batch", "8:1:4", "-q"], "1 <= min <= opt <= max"),
    "build batch not numbers": (["build", *MODEL, "--batch", "a:b:c", "-q"], "is not N or MIN:OPT:MAX"),
    "build image too small": (["build", *MODEL, "--image-size", "2", "-q"], "image size 2 is too small"),
    "build checkpoint of another model": (["build", *MODEL, "--weights", "other.pth", "-q"], "other.pth"),
    "build missing checkpoint": (["build", *MODEL, "--weights", "gone.pth", "-q"], "gone.pth"),
    "build checkpoint that is not one": (["build", *MODEL, "--weights", "text.json", "-q"], "text.json"),
    "build unknown backend": (["build", *MODEL, "--backend", "tvm", "-q"], "unknown backend 'tvm'"),
    "build precision the backend lacks": (["build", *MODEL, "--backend", "onnxruntime", "--precision", "bf16", "-q"],
                                          "onnxruntime cannot do bf16"),
    "build int8 without calibration": (["build", *MODEL, "--precision", "int8", "-q"], "int8 needs a calibration"),
    "build calibration without int8": (["build", *MODEL, "--calibration", "empty", "-q"],
                                       "calibration is for precision int8"),
    "build calibration folder that is not one": (["build", *MODEL, "--precision", "int8", "--calibration", "empty",
                                                  "--backend", "onnxruntime", "-q"], "is not a calibration folder"),
    "build format of another backend": (["build", *MODEL, "--backend", "onnxruntime", "--format", "engine", "-q"],
                                        "has no format 'engine'"),
    "build tensorrt option elsewhere": (["build", *MODEL, "--backend", "onnxruntime", "--opt-level", "2", "-q"],
                                        "takes no option optimization_level"),
    "build existing engine": (["build", *MODEL, "--backend", "onnxruntime", "--batch", "1:2:4", "-o", "engines",
                               "--name", "e", "-q"], "exists; pass --force"),
    "build output under a file": (["build", *MODEL, "-o", "text.json/engines", "-q"],
                                   "cannot write in folder 'text.json/engines' (text.json is a file"),
    "build preprocessing for another size": (["build", *MODEL, "--mean", "0.5", "--std", "0.5", "-q"],
                                             "the model takes 3x32x32"),
    "export unknown model": (["export", "--model", "nope", "--format", "onnx", "-o", "x.onnx"], "unknown model"),
    "export over an existing file": (["export", *MODEL, "--format", "onnx", "-o", "labels.txt", "-q"],
                                     "exists; pass --force"),
    "export into a missing folder": (["export", *MODEL, "--format", "onnx", "-o", "missing/x.onnx", "-q"],
                                     "does not exist"),
    "calibrate data and synthetic": (["calibrate", *MODEL, "--data", "images", "--synthetic", "-q"],
                                     "give --data PATH, or --synthetic"),
    "calibrate missing data": (["calibrate", *MODEL, "--data", "gone", "-q"], "gone"),
    "calibrate empty folder": (["calibrate", *MODEL, "--data", "empty", "-q"], "empty"),
    "calibrate unknown exclusion": (["calibrate", *MODEL, "--synthetic", "--samples", "8", "--batch-size", "8",
                                     "--exclude", "nothing", "-q"], "matches no quantized layer"),
    "calibrate fewer samples than a batch": (["calibrate", *MODEL, "--synthetic", "--samples", "4",
                                              "--batch-size", "8", "-q"], "fewer than one batch"),
    # commands that read an engine
    "info missing engine": (["info", "gone"], "does not exist"),
    "info folder that is no engine": (["info", "empty"], "has no manifest.json"),
    "verify missing engine": (["verify", "gone"], "does not exist"),
    "verify another checkpoint": (["verify", ENGINE, "--weights", "other.pth", "-q"],
                                  "was built from random weights (seed 0); --weights PATH does not apply"),
    "predict missing image": (["predict", ENGINE, "gone.png"], "does not exist"),
    "predict folder without images": (["predict", ENGINE, "empty"], "empty"),
    "predict file that is not an image": (["predict", ENGINE, "not-an-image.png", "--json"], "not-an-image.png"),
    "predict top-k above the classes": (["predict", ENGINE, "images", "--top-k", "11"], "top-k"),
    "predict top-k of zero": (["predict", ENGINE, "images", "--top-k", "0"], "top-k"),
    "predict labels of another count": (["predict", ENGINE, "images", "--labels", "three-labels.txt"],
                                        "3 class names but the engine has 10"),
    "predict missing labels": (["predict", ENGINE, "images", "--labels", "gone.txt"], "gone.txt"),
    "predict batch outside the range": (["predict", ENGINE, "images", "--batch-size", "5"],
                                        "batch size 5 is outside this engine's batch range 1:2:4"),
    "profile no batch in range": (["profile", ENGINE, "--batch-size", "8", "--iterations", "1", "-q"],
                                  "no batch size can run"),
    "profile zero iterations": (["profile", ENGINE, "--iterations", "0", "-q"], "iterations"),
    "profile gpu option on a cpu engine": (["profile", ENGINE, "--cuda-graphs", "--iterations", "1", "-q"],
                                           "applies to GPU engines"),
    "profile report into a missing folder": (["profile", ENGINE, "--json", "gone/r.json", "-q"], "does not exist"),
    "export-triton max batch beyond range": (["export-triton", ENGINE, "--repository", "repo",
                                              "--max-batch-size", "9"], "outside this engine's batch range"),
    "export-triton bad model name": (["export-triton", ENGINE, "--repository", "repo", "--model-name", "a/b"],
                                     "model name 'a/b' is not a Triton model name"),
    "export-triton missing engine": (["export-triton", "gone", "--repository", "repo"], "does not exist"),
}


@pytest.mark.parametrize("args, message", list(CASES.values()), ids=list(CASES))
def test_refused_in_one_line_and_nothing_changes(work, args, message):
    refused(args, work, message)


def test_an_engine_whose_artifact_is_corrupt_is_refused_by_every_reader(work):
    (work / ENGINE / "model.onnx").write_bytes(b"corrupt")
    for args in (["verify", ENGINE, "-q"], ["predict", ENGINE, "images"], ["profile", ENGINE, "-q"],
                 ["export-triton", ENGINE, "--repository", "repo"]):
        refused(args, work, "does not match its recorded sha256")


def test_an_engine_with_an_edited_manifest_is_refused_by_every_reader(work):
    path = work / ENGINE / "manifest.json"
    data = json.loads(path.read_text())
    data["batch"]["max"] = 64
    path.write_text(json.dumps(data))
    for args in (["info", ENGINE], ["verify", ENGINE, "-q"], ["predict", ENGINE, "images"],
                 ["profile", ENGINE, "-q"], ["export-triton", ENGINE, "--repository", "repo"]):
        refused(args, work, "was changed after the build")
