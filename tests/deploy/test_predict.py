"""predict: classifying image files with a built engine (library, CLI and the Python example),
on small random-weight engines and on the digits checkpoint."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import densenet_trt
from densenet_trt import DenseNetTRTError
from densenet_trt.cli import main
from densenet_trt.model.data import Preprocessing, image_files, read_image
from densenet_trt.deploy.predict import classify, read_labels

REPO = Path(__file__).resolve().parents[2]
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A small random-weight engine, 3x32x32 (CIFAR preprocessing), batch 2 to 3: a last batch
    of one image is padded."""
    artifact = densenet_trt.build("densenet_bc40_k12", backend="torchscript", batch="2:3:3",  # the fastest build
                                  output=tmp_path_factory.mktemp("engines"),
                                  overrides={"block_config": (2, 2, 2)})
    return densenet_trt.load(artifact.path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four RGB images of different sizes, PNG and JPEG, one in a subfolder."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "more").mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in [("a.png", (32, 32)), ("b.jpg", (40, 56)), ("c.png", (64, 48)), ("more/d.jpeg", (33, 35))]:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return path


def reference(engine, path, k):
    """Top-k of one image run alone (twice over, the engine's smallest batch)."""
    x = read_image(path, engine.manifest.preprocessing)
    probabilities = torch.softmax(engine(np.stack([x, x]))[0].double(), 0)
    top = torch.topk(probabilities, k)
    return top.indices.tolist(), top.values.numpy()


@pytest.mark.parametrize("batch_size", [None, 2])
def test_classify_a_folder_in_batches_as_each_image_alone(engine, images, batch_size):
    predictions = classify(engine.path, [images], top_k=3, batch_size=batch_size)
    assert [p.path for p in predictions] == image_files(images) and len(predictions) == 4
    for prediction in predictions:
        indices, probabilities = reference(engine, prediction.path, 3)
        assert [g.index for g in prediction.top] == indices
        # Batches of 3 (or 2) against a batch of 2: oneDNN picks kernels by the batch's shape, so
        # the last bits differ from one CPU to another; within 1e-4 relative, as test_cli_json.
        np.testing.assert_allclose([g.probability for g in prediction.top], probabilities, rtol=1e-4, atol=0)
        assert all(g.label is None for g in prediction.top)


def test_classify_files_with_labels_and_a_loaded_engine(engine, images, labels_file):
    files = [images / "c.png", images / "a.png"]
    from_file = classify(engine, files, top_k=10, labels=labels_file)
    assert [p.path for p in from_file] == files
    for prediction in from_file:
        assert [g.label for g in prediction.top] == [NAMES[g.index] for g in prediction.top]
        assert sorted(g.index for g in prediction.top) == list(range(10))
        assert sum(g.probability for g in prediction.top) == pytest.approx(1.0)
        probabilities = [g.probability for g in prediction.top]
        assert probabilities == sorted(probabilities, reverse=True)
    assert classify(engine, files, top_k=10, labels=NAMES) == from_file


def test_read_labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("  café \nthé\r\nn°3", encoding="utf-8")
    assert read_labels(path) == ["café", "thé", "n°3"]
    path.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(DenseNetTRTError, match="blank line \\(line 2\\)"):
        read_labels(path)
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(DenseNetTRTError, match="is not UTF-8"):
        read_labels(path)
    path.write_text("")
    with pytest.raises(DenseNetTRTError, match="is empty"):
        read_labels(path)
    with pytest.raises(DenseNetTRTError, match="does not exist"):
        read_labels(tmp_path / "missing.txt")


@pytest.mark.parametrize("record, message", [
    ("absent", "field preprocessing is missing"), (None, "rebuild it with preprocess=PRESET or mean=M std=S"),
])
def test_an_engine_without_preprocessing(engine, images, tmp_path, record, message, edit_manifest):
    folder = shutil.copytree(engine.path, tmp_path / "engine")
    if record == "absent":
        edit_manifest(folder, lambda m: m.pop("preprocessing"))
    else:
        edit_manifest(folder, lambda m: m.update(preprocessing=record))
    with pytest.raises(DenseNetTRTError, match=message):
        classify(folder, [images])


def test_errors(engine, images, tmp_path, labels_file):
    def fails(match, paths=(images,), **kwargs):
        with pytest.raises(DenseNetTRTError, match=match) as raised:
            classify(engine, list(paths), **kwargs)
        assert "\n" not in str(raised.value)

    fails("top-k must be between 1 and the engine's 10 classes, got 0", top_k=0)
    fails("top-k must be between 1 and the engine's 10 classes, got 11", top_k=11)
    short = tmp_path / "short.txt"
    short.write_text("\n".join(NAMES[:9]))
    fails("has 9 class names but the engine has 10 classes", labels=short)
    fails("has 11 class names", labels=NAMES + ["ten"])
    fails("batch size 4 is outside this engine's batch range 2:3:3", batch_size=4)
    fails("batch size 1 is outside", batch_size=1)
    fails("image '.*nope.png' does not exist", paths=[images / "a.png", tmp_path / "nope.png"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    fails("empty has no image files .* searched recursively", paths=[tmp_path / "empty"])
    fails("no images given", paths=[])
    (tmp_path / "broken.png").write_text("not an image")
    fails("broken.png", paths=[images / "a.png", tmp_path / "broken.png"])


def test_cli_prints_paths_and_top_k(engine, images, labels_file):
    result = run("predict", engine.path, images / "a.png", images / "more", "--labels", labels_file,
                 "--top-k", "2")
    assert result.exit_code == 0, result.output
    expected = classify(engine, [images / "a.png", images / "more"], top_k=2, labels=labels_file)
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    for i, prediction in enumerate(expected):
        assert lines[3 * i] == str(prediction.path)
        for line, guess in zip(lines[3 * i + 1:3 * i + 3], prediction.top):
            name, percent = line.split()
            assert line.startswith("  ") and name == guess.label
            assert percent == f"{guess.probability:.2%}"
    indices = run("predict", engine.path, images / "a.png", "--top-k", "1")
    assert indices.stdout.splitlines()[1].split()[0] == str(expected[0].top[0].index)


def test_cli_json(engine, images):
    result = run("predict", engine.path, images, "--json", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    # classify runs batches of 3 (the opt batch), the command batches of 2: the same images, in
    # batches whose arithmetic differs in the last bits (oneDNN picks kernels by batch size)
    expected = [p.as_dict() for p in classify(engine, [images])]
    assert [(r["path"], r["random_weights"], len(r["top"])) for r in rows] == [
        (r["path"], r["random_weights"], len(r["top"])) for r in expected]
    for row, want in zip(rows, expected):
        assert [g["probability"] for g in row["top"]] == pytest.approx([g["probability"] for g in want["top"]], rel=1e-4)
    assert [len(r["top"]) for r in rows] == [5] * 4 and set(rows[0]["top"][0]) == {"index", "label", "probability"}


def test_an_engine_with_random_weights_says_so_in_text_and_in_json(engine, images):
    warning = f"warning: {engine.path} was built from random weights (seed 0): its classes mean nothing"
    text = run("predict", engine.path, images / "a.png", "--top-k", "1")
    assert text.exit_code == 0 and text.stderr.splitlines()[0] == warning, text.output
    rows = json.loads(run("predict", engine.path, images, "--json").stdout)
    assert [row["random_weights"] for row in rows] == [True] * 4
    lines = []
    assert all(p.random_weights for p in classify(engine, [images], progress=lines.append))
    assert lines[0] == warning


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.png"], "image 'missing.png' does not exist"),
        (["IMAGES", "--top-k", "0"], "top-k must be between 1 and the engine's 10 classes"),
        (["IMAGES", "--batch-size", "8"], "batch size 8 is outside this engine's batch range 2:3:3"),
        (["IMAGES", "--labels", "missing.txt"], "labels file 'missing.txt' does not exist"),
    ],
)
def test_cli_errors_are_one_line(engine, images, args, message):
    result = run("predict", engine.path, *[images if a == "IMAGES" else a for a in args])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr


def test_python_example_classify_folder(engine, images, labels_file):
    script = REPO / "examples" / "python" / "classify_folder.py"
    out = subprocess.run([sys.executable, str(script), str(engine.path), str(images), "--labels", str(labels_file)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    expected = classify(engine, [images], top_k=5, labels=labels_file)
    assert len(lines) == 6 * len(expected)
    for i, prediction in enumerate(expected):
        assert lines[6 * i] == str(prediction.path)
        assert [line.split() for line in lines[6 * i + 1:6 * i + 6]] == [
            [g.label, f"{g.probability:.2%}"] for g in prediction.top]


def _digits_module():
    spec = importlib.util.spec_from_file_location("digits", REPO / "examples" / "digits" / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trained_digits_checkpoint_classifies_digit_images(tmp_path, digits_fp32_engine):
    """The DenseNet-BC trained on scikit-learn's digits, built with its grayscale preprocessing
    (the shared engine of tests/conftest.py), on 20 digits of the held-out split written as 8x8 PNGs."""
    from sklearn.datasets import load_digits

    digits = _digits_module()
    steps = Preprocessing(resize=digits.IMAGE_SIZE, crop=digits.IMAGE_SIZE, mean=(digits.MEAN,), std=(digits.STD,))
    artifact = digits_fp32_engine("torchscript")  # the fastest build; predict reads every backend alike
    assert artifact.manifest.preprocessing == steps and artifact.manifest.in_channels == 1

    data = load_digits()
    start, stop = digits.SPLITS["test"]
    index = np.random.default_rng(0).permutation(len(data.images))[start:stop][:20]
    folder = tmp_path / "digits"
    folder.mkdir()
    for n, i in enumerate(index):
        pixels = np.round(data.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{n:02d}_{data.target[i]}.png")

    # The PNGs preprocessed as the manifest says are the training preprocessing, but for rounding
    # to 8 bits twice (the PNG, and Pillow's resize of an 8-bit image): about a grey level each.
    expected, labels = digits.load_split("test")
    files = image_files(folder)
    preprocessed = np.stack([read_image(f, steps) for f in files])
    assert np.abs(preprocessed - expected[:20]).max() < 2 / 255 / digits.STD

    predictions = classify(artifact.path, [folder], top_k=3, labels=[str(d) for d in range(10)])
    truth = [f.stem.split("_")[1] for f in files]
    assert truth == [str(label) for label in labels[:20]]
    correct = sum(p.top[0].label == t for p, t in zip(predictions, truth))
    print(f"digits: {correct}/20 top-1 correct")
    assert correct >= 16
    assert not any(p.random_weights for p in predictions)  # trained weights: no warning
    text = run("predict", artifact.path, files[0])
    assert text.exit_code == 0 and "warning" not in text.stderr and "random" not in text.stderr


# --- class names recorded in the manifest -------------------------------------------------------


def test_the_shipped_imagenet_names_are_torchvisions():
    torchvision = pytest.importorskip("torchvision")
    from densenet_trt.model.registry import IMAGENET_CATEGORIES

    names = IMAGENET_CATEGORIES.read_text(encoding="utf-8").splitlines()
    for preset in (121, 161, 169, 201):
        assert names == getattr(torchvision.models, f"DenseNet{preset}_Weights").IMAGENET1K_V1.meta["categories"]


def test_an_engine_built_from_torchvisions_checkpoint_names_its_classes(tmp_path, monkeypatch, images):
    """torchvision's file (here with random weights, as torchvision makes the model) in torch's
    hub cache: the manifest records ImageNet's 1000 names, and predict and info use them."""
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.densenet121().state_dict(), cached)
    artifact = densenet_trt.build("densenet121", weights="imagenet", backend="torchscript", image_size=32,
                                  output=tmp_path / "engines", name="e", verify=False)
    names = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.meta["categories"]
    assert artifact.manifest.labels == names == densenet_trt.load(artifact.path).manifest.labels
    result = run("predict", artifact.path, images / "a.png", "--top-k", "3")
    assert result.exit_code == 0, result.output
    shown = [line.strip().rsplit("  ", 1)[0].strip() for line in result.stdout.splitlines()[1:]]
    assert len(shown) == 3 and set(shown) <= set(names), shown
    assert "labels  1000 class names (tench, goldfish, great white shark, ...)" in run("info", artifact.path).stdout
    other = tmp_path / "renamed.pth"  # not torchvision's file name: nothing says which names it has
    shutil.copy(cached, other)
    assert densenet_trt.build("densenet121", weights=other, backend="torchscript", image_size=32,
                              output=tmp_path / "engines", name="f", verify=False).manifest.labels is None


def test_predict_names_classes_from_the_manifest_and_a_labels_file_replaces_them(engine_copy, edit_manifest,
                                                                                 images, labels_file):
    edit_manifest(engine_copy.path, lambda m: m.update(labels=[name.upper() for name in NAMES]))
    named = classify(engine_copy.path, [images / "a.png"], top_k=10)[0]
    assert sorted(g.label for g in named.top) == sorted(name.upper() for name in NAMES)
    replaced = classify(engine_copy.path, [images / "a.png"], top_k=10, labels=labels_file)[0]
    assert sorted(g.label for g in replaced.top) == sorted(NAMES)
    edit_manifest(engine_copy.path, lambda m: m.update(labels=["one"]))
    with pytest.raises(DenseNetTRTError, match="field labels has 1 names for 10 classes; rebuild the engine"):
        classify(engine_copy.path, [images / "a.png"])


def test_no_command_or_page_names_a_labels_file_the_repository_does_not_have():
    """`--labels imagenet_classes.txt` was in predict --help, docs/predict.md and docs/deploy.md."""
    texts = [run("predict", "--help").stdout] + [
        (REPO / page).read_text() for page in ("docs/predict.md", "docs/deploy.md", "examples/python/README.md")]
    named = {m for text in texts for m in re.findall(r"--labels[ =]([\w./-]+)", " ".join(text.split()))}
    assert {m for m in named if m not in ("FILE",) and not (REPO / m).exists()} == set()
