"""Classify image files with a built engine: each image preprocessed as the engine's manifest
says, run in batches within the engine's range, and the top-k classes with their softmax
probabilities."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..progress import Progress, quiet
from ..engine.load import Engine, load
from ..model.data import Preprocessing, find_images, read_image
from ..defaults import TOP_K
from ..errors import DenseNetTRTError
from ..reading import read_text
from ..engine.verify import check_finite

@dataclasses.dataclass(frozen=True)
class Guess:
    """One of an image's top-k classes."""

    index: int
    label: str | None  # the class name where labels were given
    probability: float


@dataclasses.dataclass(frozen=True)
class Prediction:
    """An image and its top-k classes, most probable first."""

    path: Path
    top: list[Guess]
    random_weights: bool = False  # the engine's weights are random: its classes mean nothing

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "random_weights": self.random_weights,
                "top": [dataclasses.asdict(g) for g in self.top]}


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names, one per line of the UTF-8 text file at ``path`` (stripped; no blank lines;
    a regular file of at most ``reading.TEXT_LIMIT`` bytes)."""
    path = Path(path)
    text = read_text(path, "labels file")
    names = [line.strip() for line in text.splitlines()]
    if not names:
        raise DenseNetTRTError(f"labels file {path} is empty; it needs one class name per line")
    blank = [i for i, name in enumerate(names, 1) if not name]
    if blank:
        raise DenseNetTRTError(
            f"labels file {path} has a blank line (line {blank[0]}); it needs one class name per line"
        )
    return names


def engine_preprocessing(engine: Engine) -> Preprocessing:
    """How images become ``engine``'s input, from its manifest."""
    steps = engine.manifest.preprocessing
    if steps is None:
        raise DenseNetTRTError(
            f"the engine {engine.path} does not record how to preprocess images: rebuild it with "
            "preprocess=PRESET or mean=M std=S"
        )
    return steps


def expand_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files: each path a file, or a folder searched recursively for image files."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files.extend(find_images(path))
        elif path.exists():
            files.append(path)
        else:
            raise DenseNetTRTError(f"image {str(path)!r} does not exist")
    if not files:
        raise DenseNetTRTError("no images given")
    return files


def classify(
    engine: str | os.PathLike | Engine,
    paths: Iterable[str | os.PathLike],
    top_k: int = TOP_K,
    labels: str | os.PathLike | Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: Progress = quiet,
) -> list[Prediction]:
    """The top ``top_k`` classes of each image in ``paths`` (files, or folders searched
    recursively), in order, with ``engine`` (a built engine's path, or one loaded with
    ``densenet_trt.load``).

    Args:
        labels: class names, a list or a file with one per line, as many as the engine's classes;
            default: the names its manifest records (torchvision's ImageNet checkpoints), else none.
        batch_size: images per run, within the engine's batch range; default its opt batch. A
            last batch below the engine's min batch is padded up to it (the padding's results
            are dropped).
        progress: called with a line when the images have been found, and with a warning
            where the engine was built from random weights (each prediction says so too).
    """
    if not isinstance(engine, Engine):
        engine = load(engine)
    steps = engine_preprocessing(engine)
    classes = engine.manifest.model.num_classes
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= classes:
        raise DenseNetTRTError(f"top-k must be between 1 and the engine's {classes} classes, got {top_k!r}")
    names = engine.manifest.labels if labels is None else _label_names(labels, classes)
    size = engine.batch.opt if batch_size is None else engine.batch.check(batch_size, "batch size")
    files = expand_images(paths)

    random = engine.manifest.model.weights is None
    if random:
        progress(f"warning: {engine.path} was built from random weights (seed {engine.manifest.model.seed}): "
                 "its classes mean nothing")
    progress(f"classifying {len(files)} image(s) with {engine.path} in batches of {size}")
    predictions = []
    for start in range(0, len(files), size):
        chunk = files[start:start + size]
        batch = np.stack([read_image(f, steps) for f in chunk])
        if len(chunk) < engine.batch.min:
            padding = np.zeros((engine.batch.min - len(chunk), *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, padding])
        logits = engine(batch)[:len(chunk)]
        check_finite({str(engine.path): logits}, len(chunk), f"images from {chunk[0]}")
        probabilities = torch.softmax(logits.double(), dim=1)
        top = torch.topk(probabilities, top_k, dim=1)
        for path, values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
            predictions.append(Prediction(path, [
                Guess(i, None if names is None else names[i], p) for i, p in zip(indices, values)
            ], random))
    return predictions


def _label_names(labels: str | os.PathLike | Sequence[str] | None, classes: int) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        names, source = read_labels(labels), f"labels file {labels}"
    else:
        names, source = [str(name) for name in labels], "the labels"
    if len(names) != classes:
        raise DenseNetTRTError(
            f"{source} has {len(names)} class names but the engine has {classes} classes"
        )
    return names
