"""scikit-learn's handwritten digits (1,797 8x8 grayscale images, 10 classes) as DenseNet
input: scaled to [0, 1], upsampled to 32x32 (bilinear), normalised, with a fixed split.

The split is a permutation of the 1,797 images drawn with seed 0: the first 1,097 train the
model, the next 300 calibrate it for INT8, the last 400 are the held-out test set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = {"train": (0, 1097), "calibration": (1097, 1397), "test": (1397, 1797)}
IMAGE_SIZE = 32
# Mean and std of the upsampled training images, in [0, 1] units.
MEAN = 0.3050
STD = 0.3230


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of ``split``: float32 (N, 1, 32, 32), preprocessed; int64 (N,)."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    start, stop = SPLITS[split]
    index = order[start:stop]
    images = torch.from_numpy(digits.images[index].astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=IMAGE_SIZE, mode="bilinear", align_corners=False)
    images = (images - MEAN) / STD
    return images.numpy(), digits.target[index].astype(np.int64)


def write_npz(split: str, path: str) -> None:
    """Save ``split`` as the ``.npz`` that `densenet-trt calibrate --data` reads."""
    images, labels = load_split(split)
    np.savez(path, images=images, labels=labels)
