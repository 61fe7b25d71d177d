import numpy as np
import pytest
from PIL import Image

from densenet_trt import DenseNetTRTError
from densenet_trt.data import PRESETS, Dataset, Preprocessing, load_data, preprocessing, synthetic


def write_images(folder, count=6, size=(40, 30), classes=("cat", "dog"), mode="RGB"):
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / classes[i % len(classes)]
        sub.mkdir(parents=True, exist_ok=True)
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(sub / f"{i}.png")


def test_imagenet_preset_matches_torchvision_transform(tmp_path):
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    expected = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])(image).numpy()
    ours = PRESETS["imagenet"](image)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    # Pillow's and torchvision's bilinear antialiasing round differently by a grey level or so.
    assert np.abs(ours - expected).mean() < 0.02


def test_explicit_preprocessing_and_grayscale():
    steps = preprocessing(None, 32, (0.5,), (0.25,))
    assert (steps.resize, steps.crop, steps.channels) == (32, 32, 1)
    out = steps(Image.new("RGB", (64, 48), (255, 255, 255)))
    assert out.shape == (1, 32, 32) and np.allclose(out, 2.0)
    assert preprocessing("imagenet", 299).resize == round(299 * 256 / 224)
    assert Preprocessing.from_dict(steps.as_dict()) == steps


@pytest.mark.parametrize(
    "args, message",
    [
        ((None, 32, None, None), "give a preprocessing preset"),
        (("vgg", None, None, None), "unknown preprocessing preset 'vgg'"),
        ((None, 32, (0.5, 0.5), (0.2, 0.2)), "1 \\(grayscale\\) or 3 \\(RGB\\) values"),
        ((None, 32, (0.5,), (0.0,)), "std values must be positive"),
    ],
)
def test_bad_preprocessing(args, message):
    with pytest.raises(DenseNetTRTError, match=message):
        preprocessing(*args)


def test_image_folder_with_class_subfolders(tmp_path):
    write_images(tmp_path, count=6)
    data = load_data(tmp_path, preprocess=PRESETS["cifar"])
    assert data.images.shape == (6, 3, 32, 32)
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert data.source["classes"] == ["cat", "dog"]
    again = load_data(tmp_path, preprocess=PRESETS["cifar"])
    assert again.fingerprint() == data.fingerprint()
    subset = load_data(tmp_path, preprocess=PRESETS["cifar"], samples=4, seed=3)
    assert len(subset) == 4
    assert subset.fingerprint() == load_data(tmp_path, preprocess=PRESETS["cifar"], samples=4, seed=3).fingerprint()
    assert subset.fingerprint() != load_data(tmp_path, preprocess=PRESETS["cifar"], samples=4, seed=4).fingerprint()


def test_corrupt_images_are_listed_or_skipped(tmp_path):
    write_images(tmp_path, count=4)
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "dog" / "cut.png").write_bytes((tmp_path / "dog" / "1.png").read_bytes()[:60])
    with pytest.raises(DenseNetTRTError, match=r"2 unreadable image file\(s\).*broken.jpg.*--skip-bad"):
        load_data(tmp_path, preprocess=PRESETS["cifar"])
    data = load_data(tmp_path, preprocess=PRESETS["cifar"], skip_bad=True)
    assert len(data) == 4 and data.source["skipped_bad_files"] == 2


def test_folder_errors(tmp_path):
    with pytest.raises(DenseNetTRTError, match="does not exist"):
        load_data(tmp_path / "missing", preprocess=PRESETS["cifar"])
    with pytest.raises(DenseNetTRTError, match="has no image files"):
        load_data(tmp_path, preprocess=PRESETS["cifar"])
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(DenseNetTRTError, match="none of the 1 image files"):
        load_data(tmp_path, preprocess=PRESETS["cifar"], skip_bad=True)
    with pytest.raises(DenseNetTRTError, match="give a --preprocess preset"):
        load_data(tmp_path)


def test_npz_and_npy(tmp_path):
    images = np.random.default_rng(0).standard_normal((10, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(10))
    data = load_data(tmp_path / "d.npz")
    assert np.array_equal(data.images, images) and data.labels.tolist() == list(range(10))
    np.save(tmp_path / "d.npy", images)
    data = load_data(tmp_path / "d.npy", samples=3)
    assert len(data) == 3 and data.labels is None


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(pixels=np.zeros((2, 3, 8, 8), np.float32)), "no 'images' array \\(it has pixels\\)"),
        (dict(images=np.zeros((2, 8, 8), np.float32)), "expected \\(N, C, H, W\\)"),
        (dict(images=np.zeros((2, 3, 8, 8), np.uint8)), "expected preprocessed float32"),
        (dict(images=np.zeros((0, 3, 8, 8), np.float32)), "holds no images"),
        (dict(images=np.zeros((2, 3, 8, 8), np.float32), labels=np.zeros(3, np.int64)), "labels .* must be integers of shape \\(2,\\)"),
        (dict(images=np.full((2, 3, 8, 8), np.nan, np.float32)), "NaN or Inf values in 2 of its 2 images"),
    ],
)
def test_bad_arrays(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DenseNetTRTError, match=message):
        load_data(tmp_path / "d.npz")


def test_unreadable_npz_and_other_files(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(DenseNetTRTError, match="cannot read .* as a numpy file"):
        load_data(tmp_path / "d.npz")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DenseNetTRTError, match="neither an image folder nor a .npz/.npy"):
        load_data(tmp_path / "d.txt")


def test_model_fit_checks():
    data = synthetic(4, 3, 32)
    assert data.record()["fit_for_accuracy"] is False
    with pytest.raises(DenseNetTRTError, match="images of 3x32x32 .* takes 1x32x32"):
        data.check_for_model(1, 32)
    labelled = Dataset(data.images, np.array([0, 1, 2, 12]), {})
    with pytest.raises(DenseNetTRTError, match="labels from 0 to 12, but the model has 10 classes"):
        labelled.check_labels(10)
