"""Write scikit-learn's digits as PNG files, the split of digits.py, one subfolder per class.

    python examples/digits/write_images.py digits

writes digits/calibration/L/NNNN.png (the 300 calibration images) and digits/test/L/NNNN.png
(the 400 held-out test images), L the digit, NNNN the image's place in its split: 8x8
grayscale, the 0..16 values of scikit-learn scaled to 0..255. Image folders with class
subfolders give `densenet-trt calibrate --data/--eval-data` their labels, and
`densenet-trt predict` reads them as they are. An existing OUT is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import SPLITS  # noqa: E402

from densenet_trt.engine.artifact import atomic_dir  # noqa: E402

WRITTEN = ("calibration", "test")


def split_images(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, labels)`` of ``split``: uint8 (N, 8, 8) and int (N,), in digits.py's order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    start, stop = SPLITS[split]
    index = np.random.default_rng(0).permutation(len(digits.images))[start:stop]
    pixels = np.round(digits.images[index] * 255 / 16).astype(np.uint8)
    return pixels, digits.target[index]


def write_split(split: str, folder: Path) -> int:
    pixels, labels = split_images(split)
    for n, (image, label) in enumerate(zip(pixels, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{n:04d}.png")
    return len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write (must not exist)")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"error: {args.out} already exists; remove it or write elsewhere")
    with atomic_dir(args.out) as tmp:
        counts = {split: write_split(split, Path(tmp) / split) for split in WRITTEN}
    print(", ".join(f"{args.out / split}: {n} images" for split, n in counts.items()))


if __name__ == "__main__":
    main()
