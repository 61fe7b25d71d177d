"""``compile``: a DenseNet module in, a loaded engine out, in Torch-TensorRT's style
(``torch_tensorrt.compile(model, ...)``). The module's weights are saved once as a checkpoint
beside the engines, named by their sha256, so that the manifest can make the eager model again
(``verify``, ``profile``); ``build`` does the rest, with the same refusals and the same gate."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .artifact import atomic_path, writable_folder
from .build import build
from .load import Engine, load
from ..errors import DenseNetTRTError
from ..model.network import DenseNet
from ..progress import Progress, quiet
from ..model.registry import get_model_info, list_models, model_config
from .spec import Precision


def compile(  # noqa: A001 - Torch-TensorRT's name for the same call
    model: nn.Module,
    *,
    precision: str | Precision = Precision.FP32,
    backend: str = "auto",
    batch: str | int = "1",
    image_size: int | None = None,
    output: str | os.PathLike = "engines",
    name: str | None = None,
    force: bool = False,
    verify: bool = True,
    progress: Progress = quiet,
    **options: Any,
) -> Engine:
    """``model`` (a torchvision DenseNet, or one of ``densenet_trt.create_model``) built into an
    engine and loaded, ready to call: ``engine(x)`` -> logits.

    Args:
        model: its architecture must be one of the presets (``list_models()``), with any number
            of classes and input channels; its weights are written to ``output`` as
            ``PRESET-SHA.pt`` (kept: the engine's manifest names that file).
        precision, backend, batch, image_size, output, name, force, verify, progress: as
            ``build``; the other keyword arguments (``device``, ``format``, ``threads``,
            ``options``, ``calibration``, ``preprocess``...) are passed to it.
    """
    if not isinstance(model, nn.Module):
        raise DenseNetTRTError(f"model must be a torch.nn.Module (a DenseNet), not {type(model).__name__}")
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    preset = preset_of(model, state)
    checkpoint, new = _saved(state, Path(output), preset)
    progress(f"{type(model).__name__} is preset {preset}; its weights are in {checkpoint}")
    try:
        artifact = build(preset, weights=checkpoint, precision=precision, backend=backend, batch=batch,
                         image_size=image_size, output=output, name=name, force=force, verify=verify,
                         progress=progress, **options)
    except BaseException:
        if new:  # refused or failed: no engine names it
            checkpoint.unlink()
        raise
    return load(artifact.path)


def preset_of(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """The preset whose architecture ``model`` has (its state's names and shapes), with its
    number of classes and input channels."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if "classifier.weight" not in shapes or "features.conv0.weight" not in shapes:
        raise DenseNetTRTError(f"{type(model).__name__} is not a DenseNet: it has no features.conv0 and classifier")
    classes, features = shapes["classifier.weight"]
    channels = shapes["features.conv0.weight"][1]
    backbone = sum(p.numel() for p in model.parameters()) - (features + 1) * classes
    for name in list_models():
        info = get_model_info(name)
        if channels == 3 and info.parameters - (features + 1) * info.num_classes != backbone:
            continue  # the recorded count says it is another architecture: no model made
        with torch.device("meta"):
            candidate = DenseNet(**model_config(name, classes, in_channels=channels))
        if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == shapes:
            return name
    raise DenseNetTRTError(
        f"{type(model).__name__} ({backbone + (features + 1) * classes:,} parameters) has the architecture of no "
        f"preset ({', '.join(list_models())}); build a preset with build(), or its weights with weights=PATH"
    )


def _saved(state: dict[str, torch.Tensor], folder: Path, preset: str) -> tuple[Path, bool]:
    """``state`` saved in ``folder`` as ``PRESET-SHA.pt`` (the first 16 hex digits of the
    file's sha256), unless that file is already there; and whether it was written now."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = writable_folder(folder, "give another output=DIR") / f"{preset}-{hashlib.sha256(data).hexdigest()[:16]}.pt"
    if path.is_file():
        return path, False
    with atomic_path(path) as partial:
        Path(partial).write_bytes(data)
    return path, True
