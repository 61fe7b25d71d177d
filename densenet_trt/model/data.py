"""Images in: calibration and evaluation data, and the preprocessing an engine expects.

A dataset is float32 ``(N, C, H, W)`` images, already preprocessed, with optional integer
labels. It comes from an image folder (recursive; JPEG, PNG, BMP, WebP through Pillow),
preprocessed with a preset or explicit size, mean and std; from a ``.npz`` holding ``images``
and optional ``labels``; from a ``.npy`` of images; or, for smoke tests only, from random
numbers (``synthetic``). The same path, preprocessing, sample count and seed always give the
same arrays, so the same calibration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import DenseNetTRTError
from ..machine import check_images_memory
from ..reading import input_file, read_npy, read_npz

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SHOW_BAD = 5  # bad files named in an error


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize`` (bilinear, antialiased), center-crop ``crop`` x
    ``crop``, scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel. One mean
    value means grayscale input, three mean RGB.

    Scaling to [0, 1] follows the image's Pillow mode: 8-bit modes (1, L, P, RGB, CMYK, YCbCr,
    HSV, LAB, ...) are converted to grayscale or RGB and divided by 255; 16-bit grayscale
    (I;16, I;16B, ...) by 65535, as is 32-bit integer grayscale (mode I, which is how some
    16-bit files open) whose values lie in 0..65535; float grayscale (mode F) is taken as it
    is when its values lie in [0, 1]. Other values, and modes Pillow cannot convert, are
    refused. Grayscale becomes RGB by repeating it. An alpha channel is dropped (the colour
    under a transparent pixel is kept, not composited on any background).

    ``resize`` and ``crop`` must be positive integers, ``mean`` and ``std`` finite numbers and
    ``std`` at least ``MIN_STD``; anything else raises DenseNetTRTError.
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        for name in ("mean", "std"):
            object.__setattr__(self, name, _finite_numbers(name, getattr(self, name)))
        if len(self.mean) not in (1, 3) or len(self.std) != len(self.mean):
            raise DenseNetTRTError(
                f"mean and std need 1 (grayscale) or 3 (RGB) values each, got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise DenseNetTRTError(f"std values must be positive, got {list(self.std)}")
        if any(s < MIN_STD for s in self.std):
            raise DenseNetTRTError(f"std values must be at least {MIN_STD:g} (a smaller one makes the inputs "
                                   f"overflow), got {list(self.std)}")
        if not 1 <= self.crop <= self.resize:
            raise DenseNetTRTError(f"crop {self.crop} must be between 1 and the resize {self.resize}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The size a ``width`` x ``height`` image is resized to before the crop;
        DenseNetTRTError where the image or its resized copy has more than
        ``MAX_IMAGE_PIXELS`` pixels (a 1 x 1000000 strip resized to a shorter side of 32 would
        be 32 x 32000000)."""
        if min(width, height) < 1:
            raise DenseNetTRTError(f"the image is {width}x{height} pixels: it has none")
        factor = self.resize / min(width, height)
        size = (max(self.crop, round(width * factor)), max(self.crop, round(height * factor)))
        for what, (w, h) in (("the image", (width, height)), (f"resized to a shorter side of {self.resize} it", size)):
            if w * h > MAX_IMAGE_PIXELS:
                raise DenseNetTRTError(
                    f"refused as a possible decompression bomb: {what} has {w}x{h} = {w * h} pixels, over "
                    f"the limit of {MAX_IMAGE_PIXELS}; crop or shrink the image"
                )
        return size

    def as_dict(self) -> dict[str, Any]:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Preprocessing:
        """The Preprocessing ``as_dict`` gave; DenseNetTRTError for a record that is not one."""
        expected = "it needs resize and crop (positive integers), mean and std (lists of 1 or 3 numbers)"
        if not isinstance(record, Mapping):
            raise DenseNetTRTError(f"preprocessing record {record!r} is not a mapping; {expected}")
        missing = [key for key in ("resize", "crop", "mean", "std") if key not in record]
        if missing:
            raise DenseNetTRTError(f"preprocessing record {dict(record)!r} lacks {', '.join(missing)}; {expected}")
        try:
            return cls(record["resize"], record["crop"], record["mean"], record["std"])
        except DenseNetTRTError as e:
            raise DenseNetTRTError(f"preprocessing record {dict(record)!r}: {e}") from None

    def __call__(self, image) -> np.ndarray:
        """A Pillow image as a float32 (C, crop, crop) array; DenseNetTRTError for an image
        whose mode or values cannot be scaled to [0, 1] (see the class), or that has, or would
        have resized, more than ``MAX_IMAGE_PIXELS`` pixels."""
        from PIL import Image

        size = self.resized_size(*image.size)
        if image.mode in DEEP_MODES:
            image, scale = Image.fromarray(_unit_gray(image), "F"), 1.0
        else:
            image, scale = _eight_bit(image, self.channels), 255.0
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        array = np.asarray(image, dtype=np.float32) / scale
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if len(array) != self.channels:  # deep grayscale for an RGB model
            array = np.repeat(array, self.channels, axis=0)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return np.ascontiguousarray((array - mean) / std)


# The least std: pixel values in [0, 1] divided by a smaller one can overflow float32.
MIN_STD = 1e-6

# The most pixels an image, or its resized copy, may have: Pillow's default decompression-bomb
# limit (PIL.Image.MAX_IMAGE_PIXELS, 2**30 / 4 / 3: 256 MiB of 24-bit pixels), stated here so that
# it holds whatever Pillow's global is set to.
MAX_IMAGE_PIXELS = 89_478_485

# Pillow modes with more than 8 bits per value; they are grayscale. Every other mode is 8-bit.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
DEEP_MODES = (*SIXTEEN_BIT_MODES, "I", "F")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DenseNetTRTError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _finite_numbers(name: str, values: Any) -> tuple[float, ...]:
    if not isinstance(values, (tuple, list)) or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):
        raise DenseNetTRTError(f"{name} must be a list of numbers, got {values!r}")
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in values):
        raise DenseNetTRTError(f"{name} values must be finite numbers, got {list(values)}")
    return values


def _eight_bit(image, channels: int):
    """An 8-bit Pillow image as mode L (one channel) or RGB (three); alpha is dropped."""
    target = "L" if channels == 1 else "RGB"
    try:
        return image.convert(target)
    except ValueError:  # no direct conversion (LAB to L): go through RGB
        pass
    try:
        return image.convert("RGB").convert(target)
    except ValueError:
        raise DenseNetTRTError(
            f"Pillow cannot convert an image of mode {image.mode} to grayscale or RGB; save it as "
            "8- or 16-bit grayscale or RGB"
        ) from None


def _unit_gray(image) -> np.ndarray:
    """A 16-bit, 32-bit integer or float grayscale Pillow image as float32 values in [0, 1]."""
    values = np.asarray(image)
    if image.mode == "F":
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise DenseNetTRTError(
                f"a float image (Pillow mode F) must hold values in [0, 1]; this one has "
                f"{_value_range(values)}: save it scaled to [0, 1], or as 8- or 16-bit"
            )
        return values.astype(np.float32)
    if image.mode == "I" and (values.min() < 0 or values.max() > 65535):
        raise DenseNetTRTError(
            f"a 32-bit integer image (Pillow mode I) is read as 16-bit (0 to 65535); this one has "
            f"{_value_range(values)}: save it as 8- or 16-bit"
        )
    return values.astype(np.float32) / np.float32(65535)


def _value_range(values: np.ndarray) -> str:
    if np.isnan(values).any():
        return "NaN values"
    return f"values from {values.min():g} to {values.max():g}"


PRESETS = {
    # torchvision's ImageNet evaluation transform.
    "imagenet": Preprocessing(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # CIFAR-10 training-set statistics; the images are already 32x32.
    "cifar": Preprocessing(32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def _how_to_preprocess(channels: int, size: int) -> str:
    """What gives images of ``channels`` x ``size`` x ``size``: a preset with that many channels,
    or a mean and std of that many values."""
    presets = [name for name, steps in PRESETS.items() if steps.channels == channels]
    if presets:
        return f"image_size={size} with preprocess={'|'.join(presets)}"
    return f"image_size={size} with mean and std of {channels} value(s) each, e.g. mean={','.join(['0.5'] * channels)}"


def preprocessing(
    preset: str | None = None,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Preprocessing:
    """A preset, with ``image_size`` (the crop; the resize keeps the preset's ratio), ``mean``
    and ``std`` replacing its values; without a preset all three are needed."""
    if preset is not None and preset not in PRESETS:
        raise DenseNetTRTError(f"unknown preprocessing preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset is None and (image_size is None or mean is None or std is None):
        raise DenseNetTRTError(
            "give a preprocessing preset (preprocess=imagenet or preprocess=cifar) or all of image_size=N, mean=M and std=S"
        )
    base = PRESETS[preset] if preset else Preprocessing(image_size, image_size, tuple(mean), tuple(std))
    if image_size is not None and image_size != base.crop:
        if image_size < 1:
            raise DenseNetTRTError(f"image size must be positive, got {image_size}")
        base = dataclasses.replace(base, resize=round(image_size * base.resize / base.crop), crop=image_size)
    if mean is not None or std is not None:
        base = Preprocessing(base.resize, base.crop, tuple(mean or base.mean), tuple(std or base.std))
    return base


@dataclasses.dataclass
class Dataset:
    """Preprocessed images, their labels where known, and where they came from."""

    images: np.ndarray  # float32 (N, C, H, W)
    labels: np.ndarray | None  # int64 (N,)
    source: dict[str, Any]  # kind, path, preprocessing, skipped files, ...

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def fingerprint(self) -> str:
        """sha256 of the images and labels: the same data gives the same fingerprint."""
        digest = hashlib.sha256()
        digest.update(str(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        """What a report says about this dataset."""
        return {
            **self.source,
            "samples": len(self),
            "shape": list(self.images.shape[1:]),
            "labels": self.labels is not None,
            "sha256": self.fingerprint(),
        }

    def check_for_model(self, in_channels: int, image_size: int, what: str = "data") -> None:
        """Refuse images the model cannot take."""
        c, h, w = self.images.shape[1:]
        if c != in_channels or h != image_size or w != image_size:
            raise DenseNetTRTError(
                f"the {what} has images of {c}x{h}x{w} (CxHxW) but the model takes "
                f"{in_channels}x{image_size}x{image_size}; preprocess to that size ({_how_to_preprocess(in_channels, image_size)})"
            )

    def check_labels(self, num_classes: int, what: str = "data") -> None:
        if self.labels is not None and len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= num_classes):
            raise DenseNetTRTError(
                f"the {what} has labels from {self.labels.min()} to {self.labels.max()}, but the "
                f"model has {num_classes} classes"
            )

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The images in order, ``batch_size`` at a time (the last batch may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield self.images[start:start + batch_size]


def load_data(
    path: str | os.PathLike,
    *,
    preprocess: Preprocessing | None = None,
    samples: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Dataset:
    """The dataset at ``path``: an image folder (needs ``preprocess``), a ``.npz`` or a ``.npy``.

    ``samples``: how many to take, a subset drawn with ``seed`` (all when None or more than
    there are). ``skip_bad``: leave out image files Pillow cannot read (counted in the source
    record) instead of failing.
    """
    if not str(path):
        raise DenseNetTRTError("data path '' is empty (it is not the current folder); give the data's file or folder")
    path = Path(path)
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise DenseNetTRTError(f"samples must be a positive integer, got {samples!r}")
    if not path.exists():
        raise DenseNetTRTError(f"data path {str(path)!r} does not exist")
    if path.is_dir():
        if preprocess is None:
            raise DenseNetTRTError(
                f"{path} is an image folder: give preprocess=PRESET, or image_size=N, mean=M and std=S"
            )
        dataset = _load_folder(path, preprocess, samples, seed, skip_bad, progress)
    elif path.suffix.lower() in (".npz", ".npy"):
        dataset = _load_arrays(path, samples, seed)
    else:
        raise DenseNetTRTError(
            f"{path} is neither an image folder nor a .npz/.npy file of preprocessed images"
        )
    if not np.isfinite(dataset.images).all():
        bad = int((~np.isfinite(dataset.images)).reshape(len(dataset), -1).any(axis=1).sum())
        raise DenseNetTRTError(f"{path} has NaN or Inf values in {bad} of its {len(dataset)} images")
    return dataset


def synthetic(samples: int, in_channels: int, image_size: int, seed: int = 0) -> Dataset:
    """Standard-normal images: enough to exercise calibration, not to judge accuracy."""
    check_images_memory(samples, in_channels, image_size)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((samples, in_channels, image_size, image_size), dtype=np.float32)
    return Dataset(images, None, {"kind": "synthetic", "seed": seed, "fit_for_accuracy": False})


def _subset(total: int, samples: int | None, seed: int) -> np.ndarray:
    """Indices of the samples to take, in a seeded random order."""
    order = np.random.default_rng(seed).permutation(total)
    return order if samples is None else order[:samples]


def _load_arrays(path: Path, samples: int | None, seed: int) -> Dataset:
    if path.suffix.lower() == ".npz":
        arrays = read_npz(path, "data file", ["images"], ["labels"])
        images, labels = arrays["images"], arrays.get("labels")
    else:
        images, labels = read_npy(path, "data file"), None
    if images.ndim != 4:
        raise DenseNetTRTError(f"images in {path} have shape {images.shape}; expected (N, C, H, W)")
    if not np.issubdtype(images.dtype, np.floating):
        raise DenseNetTRTError(
            f"images in {path} are {images.dtype}; expected preprocessed float32 (normalised "
            "like the model's training data)"
        )
    if len(images) == 0:
        raise DenseNetTRTError(f"{path} holds no images")
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise DenseNetTRTError(
                f"labels in {path} must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}"
            )
    index = np.sort(_subset(len(images), samples, seed))
    images = np.ascontiguousarray(images[index], dtype=np.float32)
    labels = None if labels is None else labels[index].astype(np.int64)
    return Dataset(images, labels, {"kind": path.suffix.lower()[1:], "path": str(path.resolve())})


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, in sorted order. Only regular files (or links
    to them) count: named pipes, sockets and devices with an image suffix are passed over
    without a word, as folders are."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_images(folder: Path) -> list[Path]:
    """``image_files(folder)``; DenseNetTRTError where the folder cannot be read or has none."""
    try:
        files = image_files(folder)
    except OSError as e:
        raise DenseNetTRTError(f"cannot read folder {folder}: {e.strerror}") from None
    if not files:
        raise DenseNetTRTError(
            f"{folder} has no image files ({', '.join(IMAGE_SUFFIXES)}), searched recursively"
        )
    return files


def read_image(path: str | os.PathLike, preprocess: Preprocessing) -> np.ndarray:
    """One image file, preprocessed; DenseNetTRTError naming the file if it is not a regular
    file, Pillow cannot read it, it or its resized copy is over ``MAX_IMAGE_PIXELS`` (checked
    before the pixels are decoded; Pillow's own decompression-bomb warning is an error too), or
    its mode or values cannot be scaled to [0, 1]."""
    path = input_file(path, "image")
    return _decode(path, preprocess, str(path))


def decode_image(data: bytes, preprocess: Preprocessing, name: str = "image") -> np.ndarray:
    """An image file's bytes (``name`` in errors), preprocessed and refused as ``read_image``
    refuses a file."""
    if not data:
        raise DenseNetTRTError(f"{name}: no bytes: it is not an image")
    return _decode(io.BytesIO(data), preprocess, name)


def _decode(source: Path | io.BytesIO, preprocess: Preprocessing, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                preprocess.resized_size(*image.size)  # before the pixels are decoded
                image.load()
                return preprocess(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DenseNetTRTError(
            f"{name}: refused as a possible decompression bomb: {e} Shrink the image"
        ) from None
    except (DenseNetTRTError, OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DenseNetTRTError(f"{name}: {e}") from None


def _load_folder(
    folder: Path, preprocess: Preprocessing, samples: int | None, seed: int, skip_bad: bool,
    progress: Callable[[str], None],
) -> Dataset:
    files = find_images(folder)
    classes = _classes(folder, files)
    wanted = len(files) if samples is None else min(samples, len(files))
    images, labels, bad = [], [], []
    for i in _subset(len(files), None, seed):
        if len(images) == wanted or (bad and not skip_bad and len(bad) >= SHOW_BAD):
            break
        try:
            images.append(read_image(files[i], preprocess))
        except DenseNetTRTError as e:
            bad.append(str(e))
            continue
        if classes is not None:
            labels.append(classes[files[i].relative_to(folder).parts[0]])
        if len(images) % 500 == 0:
            progress(f"read {len(images)}/{wanted} images")
    if bad and not skip_bad:
        raise DenseNetTRTError(
            f"{len(bad)}{'+' if len(bad) >= SHOW_BAD else ''} unreadable image file(s) in {folder}, "
            f"first: {'; '.join(bad[:SHOW_BAD])}; fix or remove them, or pass skip_bad=True"
        )
    if not images:
        raise DenseNetTRTError(f"none of the {len(files)} image files in {folder} could be read")
    source = {
        "kind": "folder", "path": str(folder.resolve()), "preprocessing": preprocess.as_dict(),
        "skipped_bad_files": len(bad), "classes": sorted(classes, key=classes.get) if classes else None,
    }
    stacked = np.stack(images).astype(np.float32)
    return Dataset(stacked, np.asarray(labels, np.int64) if classes is not None else None, source)


def _classes(folder: Path, files: list[Path]) -> dict[str, int] | None:
    """Class indices from the names of the first-level subfolders, sorted (torchvision's
    ImageFolder order), when every image sits in one; else None (no labels)."""
    tops = [f.relative_to(folder).parts for f in files]
    if any(len(parts) != 2 for parts in tops):
        return None
    return {name: i for i, name in enumerate(sorted({parts[0] for parts in tops}))}
