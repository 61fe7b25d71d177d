"""Reading DenseNet checkpoints as users have them.

- a state_dict saved with ``torch.save`` (``.pth``/``.pt``, read with ``weights_only=True``),
  also wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` and with DataParallel's
  ``module.`` prefix;
- torchvision's original releases, whose keys read ``denselayer1.norm.1.weight``;
- ``.safetensors`` files.

Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import DenseNetTRTError
from ..reading import input_file

# torchvision's own remapping of its legacy checkpoint keys (torchvision/models/densenet.py).
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")
PRETRAINED_TAGS = ("imagenet", "IMAGENET1K_V1", "DEFAULT", "pretrained")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint at ``path``, with keys in torchvision's current names."""
    path = input_file(path, "checkpoint")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise DenseNetTRTError(f"{path} is not a readable safetensors file: {e}") from None
    else:
        try:
            with warnings.catch_warnings():  # torch's note that it checks sparse tensors, which are refused
                warnings.filterwarnings("ignore", "Validating sparse tensor invariants", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many types for a file that is not a checkpoint
            raise DenseNetTRTError(
                f"{path} is not a checkpoint densenet-trt can read (not a state_dict saved with "
                f"torch.save, nor safetensors): {_load_failure(e)}"
            ) from None
    state = _unwrap(state, path)
    _check_dense(state, path)
    _check_finite(state, path)
    return normalize_keys(state)


def _load_failure(error: Exception) -> str:
    """The cause of torch.load's failure in a few words, without its advice to load the file
    with weights_only=False or to allowlist globals: a checkpoint must never run code."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = lines[0].split(". ")[0].rstrip(".") if lines else ""
    pickled = re.match(r"Unsupported global: GLOBAL (\S+)", cause)
    if pickled:
        return f"it pickles {pickled.group(1)}, which is not a tensor; pickled code is never run"
    if not cause or re.search(r"weights_only|safe_globals|Weights only load failed", cause):
        return f"torch.load failed ({type(error).__name__})"
    return cause if cause.startswith(type(error).__name__) else f"{type(error).__name__}: {cause}"


def _check_dense(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors that are not dense values in memory: meta tensors (a shape without
    values), sparse and other layouts, quantized tensors."""
    for key, value in state.items():
        if value.is_meta:
            kind = "a meta tensor (a shape without values)"
        elif value.layout != torch.strided:
            kind = f"a {str(value.layout).replace('torch.', '')} tensor"
        elif value.is_quantized:
            kind = "a quantized tensor"
        else:
            continue
        raise DenseNetTRTError(
            f"checkpoint {path} holds {key} as {kind}; a checkpoint needs dense tensors with values: save "
            "model.state_dict() of a model whose weights are loaded, on the CPU"
        )


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights with NaN or Inf: a model made from them cannot predict anything."""
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        more = f" (and {len(bad) - 1} more tensor{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise DenseNetTRTError(
            f"checkpoint {path} has NaN or Inf values in {bad[0]}{more}; use a checkpoint saved "
            "before training diverged"
        )


def _unwrap(state: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(state, Mapping):
        for key in _WRAPPER_KEYS:
            inner = state.get(key)
            if isinstance(inner, Mapping):
                state = inner
                break
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise DenseNetTRTError(
            f"{path} holds no state_dict (a mapping of names to tensors); "
            "save one with torch.save(model.state_dict(), path)"
        )
    return state


def normalize_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DataParallel's ``module.`` prefix and rename torchvision's legacy keys."""
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        match = _LEGACY_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = value
    return out


def checkpoint_num_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    weight = state.get("classifier.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def checkpoint_in_channels(state: Mapping[str, torch.Tensor]) -> int | None:
    weight = state.get("features.conv0.weight")
    return int(weight.shape[1]) if weight is not None and weight.dim() == 4 else None


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``state`` into ``model``.

    If only the classifier's number of classes differs, every other tensor is loaded and the
    classifier keeps its fresh initialisation, with a warning (the fine-tuning case). Any other
    mismatch raises, naming the first mismatched keys and shapes.
    """
    own = model.state_dict()
    # The first torchvision releases predate BatchNorm's num_batches_tracked; BatchNorm fills it in.
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if [k for k in shapes if k not in CLASSIFIER_KEYS]:
        problems.append(
            "shape mismatch "
            + _first([f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in shapes])
        )
    if problems:
        raise DenseNetTRTError(
            f"{source} does not fit this model: {'; '.join(problems)}. "
            "Check model=NAME (and the preset's overrides) against the checkpoint"
        )
    if shapes:
        warnings.warn(
            f"{source} has {checkpoint_num_classes(state)} classes, the model "
            f"{own['classifier.weight'].shape[0]}: the classifier is re-initialised "
            "(fine-tune it before use)",
            stacklevel=2,
        )
        state = {k: v for k, v in state.items() if k not in CLASSIFIER_KEYS}
    model.load_state_dict(state, strict=not shapes)


def _first(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
