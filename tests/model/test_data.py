import os
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from densenet_trt import DenseNetTRTError
from helpers import finishes, png_header
from densenet_trt.model.data import (
    PRESETS, Dataset, Preprocessing, find_images, load_data, preprocessing, read_image, synthetic,
)


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
    with pytest.raises(DenseNetTRTError, match=r"2 unreadable image file\(s\).*broken.jpg.*skip_bad=True"):
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
    with pytest.raises(DenseNetTRTError, match="give preprocess=PRESET"):
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


# --- image modes: every mode Pillow gives is scaled to [0, 1], or refused by name --------------

GRAY = Preprocessing(4, 4, (0.0,), (1.0,))  # 4x4 images pass through resize and crop unchanged
RGB = Preprocessing(4, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
VALUES16 = np.array([[0, 1, 257, 32768], [65535, 65534, 1000, 40000]] * 2, np.uint16)


def saved(image, path):
    """``image`` written to ``path`` and read back the way the data module reads files."""
    image.save(path)
    with Image.open(path) as back:
        back.load()
        return back.copy()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_is_scaled_by_65535_not_clipped(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    assert saved(Image.fromarray(VALUES16), path).mode == "I;16"
    assert np.array_equal(read_image(path, GRAY)[0], VALUES16 / np.float32(65535))
    rgb = read_image(path, RGB)  # grey replicated to three channels
    assert rgb.shape == (3, 4, 4) and np.array_equal(rgb[0], rgb[2])
    assert np.allclose(rgb[1], VALUES16 / 65535.0)


def test_16_bit_big_endian_tiff(tmp_path):
    image = Image.new("I;16B", (4, 4))
    for (y, x), v in np.ndenumerate(VALUES16[:4]):
        image.putpixel((x, y), int(v))
    path = tmp_path / "be.tif"
    assert saved(image, path).mode == "I;16B"
    assert np.allclose(read_image(path, GRAY)[0], VALUES16[:4] / 65535.0)


@pytest.mark.parametrize("value, expected", [(65535, 1.0), (32768, 32768 / 65535), (0, 0.0)])
def test_16_bit_images_are_resized_and_cropped_at_full_depth(tmp_path, value, expected):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((12, 10), value, np.uint16)).save(path)
    out = read_image(path, GRAY)
    assert out.shape == (1, 4, 4) and np.allclose(out, expected, atol=1e-6)


def test_32_bit_integer_images_up_to_65535_read_as_16_bit(tmp_path):
    path = tmp_path / "int.tif"
    assert saved(Image.fromarray(VALUES16.astype(np.int32)), path).mode == "I"
    assert np.allclose(read_image(path, GRAY)[0], VALUES16 / 65535.0)
    for bad in (70000, -1):
        Image.fromarray(np.full((4, 4), bad, np.int32)).save(path)
        with pytest.raises(DenseNetTRTError, match=rf"int.tif: .*mode I\b.*{bad}"):
            read_image(path, GRAY)


def test_float_images_in_0_1_read_as_they_are_others_are_refused(tmp_path):
    path = tmp_path / "float.tif"
    values = (VALUES16 / 65535.0).astype(np.float32)
    assert saved(Image.fromarray(values), path).mode == "F"
    assert np.array_equal(read_image(path, GRAY)[0], values)
    for bad, shown in ((255.0, "255"), (-0.5, "-0.5"), (np.nan, "NaN")):
        Image.fromarray(np.full((4, 4), bad, np.float32)).save(path)
        with pytest.raises(DenseNetTRTError, match=rf"float.tif: .*mode F\b.*{shown}"):
            read_image(path, GRAY)


def _eight_bit(rng):
    return rng.integers(0, 256, (4, 4), dtype=np.uint8)


def test_8_bit_modes_scale_by_255_and_drop_alpha(tmp_path):
    rng = np.random.default_rng(0)
    gray, alpha = _eight_bit(rng), _eight_bit(rng)
    rgb = np.stack([_eight_bit(rng) for _ in range(3)], -1)
    bits = gray > 127
    cases = {
        "L.png": (Image.fromarray(gray), gray / 255.0),
        "1.png": (Image.fromarray(bits), bits.astype(np.float64)),
        "LA.png": (Image.fromarray(np.stack([gray, alpha], -1), "LA"), gray / 255.0),
    }
    for name, (image, expected) in cases.items():
        assert saved(image, tmp_path / name).mode == name[:-4]
        assert np.allclose(read_image(tmp_path / name, GRAY)[0], expected), name
    rgba = Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA")
    assert saved(rgba, tmp_path / "RGBA.png").mode == "RGBA"
    assert np.allclose(read_image(tmp_path / "RGBA.png", RGB), rgb.transpose(2, 0, 1) / 255.0)
    palette = Image.fromarray(rgb).quantize(8)
    assert saved(palette, tmp_path / "P.png").mode == "P"
    expected = np.asarray(palette.convert("RGB")).transpose(2, 0, 1) / 255.0
    assert np.allclose(read_image(tmp_path / "P.png", RGB), expected)


def test_cmyk_reads_as_rgb(tmp_path):
    cmyk = np.zeros((4, 4, 4), np.uint8)
    cmyk[0, 0] = (255, 0, 0, 0)  # cyan
    cmyk[0, 1] = (0, 0, 0, 255)  # black
    assert saved(Image.fromarray(cmyk, "CMYK"), tmp_path / "c.tif").mode == "CMYK"
    out = read_image(tmp_path / "c.tif", RGB)
    assert out[:, 0, 0].tolist() == [0, 1, 1] and out[:, 0, 1].tolist() == [0, 0, 0]
    assert out[:, 3, 3].tolist() == [1, 1, 1]


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_pillow_mode_is_read_in_0_1_or_refused_by_mode(mode):
    image = Image.new(mode, (4, 4))
    for steps in (GRAY, RGB):
        try:
            out = steps(image)
        except DenseNetTRTError as e:
            assert mode == "La" and f"mode {mode}" in str(e)
            continue
        assert out.shape == (steps.channels, 4, 4) and 0 <= out.min() and out.max() <= 1


def test_image_folders_read_16_bit_images_the_same_way(tmp_path):
    for i, value in enumerate((0, 32768, 65535)):
        Image.fromarray(np.full((6, 6), value, np.uint16)).save(tmp_path / f"{i}.png")
    data = load_data(tmp_path, preprocess=GRAY)
    assert sorted(np.round(data.images.reshape(3, -1).mean(1), 4).tolist()) == [0.0, 0.5, 1.0]


# --- decompression bombs ----------------------------------------------------------------------

@pytest.mark.parametrize("side", [100_000, 10_000])  # over twice Pillow's limit (error), over it (warning)
def test_decompression_bombs_are_refused_by_name(tmp_path, side):
    bomb = png_header(tmp_path / "bomb.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is merely warned about
        with pytest.raises(DenseNetTRTError, match=r"bomb.png: .*decompression bomb"):
            read_image(bomb, PRESETS["cifar"])
        write_images(tmp_path, count=2)
        with pytest.raises(DenseNetTRTError, match=r"1 unreadable image file\(s\).*bomb.png"):
            load_data(tmp_path, preprocess=PRESETS["cifar"])
        data = load_data(tmp_path, preprocess=PRESETS["cifar"], skip_bad=True)
    assert len(data) == 2 and data.source["skipped_bad_files"] == 1


# --- mean, std, resize and crop -----------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mean=(float("nan"),)), r"mean values must be finite numbers, got \[nan\]"),
        (dict(mean=(0.5, float("inf"), 0.5)), r"mean values must be finite numbers, got \[0.5, inf, 0.5\]"),
        (dict(std=(float("inf"),)), r"std values must be finite numbers, got \[inf\]"),
        (dict(std=(float("nan"),)), r"std values must be finite numbers, got \[nan\]"),
        (dict(std=(0.0,)), r"std values must be positive, got \[0.0\]"),
        (dict(std=(-1,)), r"std values must be positive, got \[-1.0\]"),
        (dict(mean=("0.5",)), r"mean must be a list of numbers, got \('0.5',\)"),
        (dict(mean=0.5), r"mean must be a list of numbers, got 0.5"),
        (dict(std=(True,)), r"std must be a list of numbers"),
        (dict(resize=0), r"resize must be a positive integer, got 0"),
        (dict(resize=32.5), r"resize must be a positive integer, got 32.5"),
        (dict(crop=-4), r"crop must be a positive integer, got -4"),
        (dict(crop="32"), r"crop must be a positive integer, got '32'"),
        (dict(crop=True), r"crop must be a positive integer, got True"),
    ],
)
def test_preprocessing_refuses_values_that_would_give_garbage(kwargs, message):
    args = dict(resize=32, crop=32, mean=(0.5,), std=(0.25,)) | kwargs
    with pytest.raises(DenseNetTRTError, match=message):
        Preprocessing(**args)


def test_preprocessing_normalises_numbers():
    steps = Preprocessing(np.int64(36), 32, [np.float32(0.5), 1, 0], (0.25, 2, np.float64(0.5)))
    assert steps.as_dict() == {"resize": 36, "crop": 32, "mean": [0.5, 1.0, 0.0], "std": [0.25, 2.0, 0.5]}
    assert type(steps.resize) is int and steps == Preprocessing.from_dict(steps.as_dict())


@pytest.mark.parametrize(
    "record, message",
    [
        ({"resize": 32, "mean": [0.5], "std": [0.2]}, "lacks crop"),
        ({}, "lacks resize, crop, mean, std"),
        ([32, 32], "is not a mapping"),
        ({"resize": "32", "crop": 32, "mean": [0.5], "std": [0.2]}, "resize must be a positive integer"),
        ({"resize": 32, "crop": 32, "mean": None, "std": [0.2]}, "mean must be a list of numbers"),
        ({"resize": 32, "crop": 32, "mean": [0.5], "std": ["x"]}, "std must be a list of numbers"),
        ({"resize": 32, "crop": 32, "mean": [0.5], "std": [None]}, "std must be a list of numbers"),
    ],
)
def test_preprocessing_record_that_is_not_one(record, message):
    with pytest.raises(DenseNetTRTError, match=rf"preprocessing record .*{message}"):
        Preprocessing.from_dict(record)


# --- cut or junk numpy files ----------------------------------------------------------------------

@pytest.mark.parametrize("save", ["savez", "savez_compressed", "save"])
@pytest.mark.parametrize("damage", ["half", "junk", "empty"])
def test_cut_or_junk_numpy_files_are_one_line_errors(tmp_path, save, damage):
    path = tmp_path / ("d.npy" if save == "save" else "d.npz")
    images = np.random.default_rng(0).standard_normal((10, 1, 8, 8)).astype(np.float32)
    getattr(np, save)(path, **({"arr": images} if save == "save" else {"images": images}))
    data = path.read_bytes()
    cut = {"half": data[:len(data) // 2], "empty": b"",
           "junk": np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8).tobytes()}[damage]
    path.write_bytes(cut)
    with pytest.raises(DenseNetTRTError, match=rf"cannot read {re.escape(str(path))} as a numpy file") as e:
        load_data(path)
    assert "\n" not in str(e.value) and "allow_pickle" not in str(e.value)


# --- named pipes and other files that are not regular files -----------------------------------

@pytest.mark.parametrize("name", ["pipe.npz", "pipe.npy"])
def test_named_pipe_as_data_is_refused(tmp_path, name):
    os.mkfifo(tmp_path / name)
    error = finishes(lambda: load_data(tmp_path / name), tmp_path / name)
    assert isinstance(error, DenseNetTRTError) and f"{tmp_path / name} is not a regular file" in str(error)


def test_named_pipe_as_image_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    error = finishes(lambda: read_image(tmp_path / "pipe.png", PRESETS["cifar"]), tmp_path / "pipe.png")
    assert isinstance(error, DenseNetTRTError) and "pipe.png is not a regular file" in str(error)


def test_named_pipes_in_image_folders_are_passed_over(tmp_path):
    write_images(tmp_path, count=2)
    os.mkfifo(tmp_path / "cat" / "pipe.png")
    assert finishes(lambda: load_data(tmp_path, preprocess=PRESETS["cifar"]), tmp_path / "cat" / "pipe.png") is None
    assert "pipe.png" not in str(find_images(tmp_path))
