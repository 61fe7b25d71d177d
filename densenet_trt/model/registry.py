"""The registry of named DenseNet presets, as timm's registry keeps its models: each preset's
DenseNet arguments, input size, preprocessing and published accuracy in one place, and the
functions that make a preset's model (random, from a checkpoint, or again from a manifest).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.artifact import sha256_file
from .data import Preprocessing, preprocessing
from ..errors import DenseNetTRTError

if TYPE_CHECKING:  # imported where a model is made: listing the presets loads no torch
    from .network import DenseNet


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published accuracy figure for a preset."""

    metric: str  # e.g. "ImageNet top-1" or "CIFAR-10+ error", in percent
    value: float
    source: str

    def __str__(self) -> str:
        return f"{self.metric} {self.value:g}% ({self.source})"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A named preset: the DenseNet arguments and what is known about it."""

    name: str
    family: str  # "imagenet" or "cifar"
    config: dict[str, Any]
    image_size: int
    references: tuple[Reference, ...]
    description: str
    # Counted from the model at the preset's input size by ``count_preset`` (a test checks
    # each): recorded, so that listing the presets builds no model.
    parameters: int
    macs: int
    pretrained_file: str | None = None  # torchvision's checkpoint file name, where one exists

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @property
    def pretrained_url(self) -> str | None:
        if self.pretrained_file is None:
            return None
        return f"https://download.pytorch.org/models/{self.pretrained_file}"

    def preprocessing(self, image_size: int, in_channels: int) -> Preprocessing | None:
        """How images become this preset's input at ``image_size``: its family's preprocessing
        (torchvision's ImageNet evaluation, or CIFAR's statistics); None where the family's
        channels do not fit ``in_channels`` (a grayscale model: give mean and std)."""
        steps = preprocessing(self.family, image_size)
        return steps if steps.channels == in_channels else None


_REGISTRY: dict[str, ModelInfo] = {}


def _imagenet(name, counts, k, blocks, init, top1, source, pretrained_file=None, extra=()):
    config = dict(
        growth_rate=k, block_config=blocks, num_init_features=init, bn_size=4,
        compression=0.5, drop_rate=0.0, num_classes=1000, stem="imagenet",
    )
    refs = (Reference("ImageNet top-1", top1, source),) + tuple(extra)
    _REGISTRY[name] = ModelInfo(
        name, "imagenet", config, 224, refs,
        f"DenseNet-BC ImageNet, k={k}, blocks {'-'.join(map(str, blocks))}", *counts, pretrained_file,
    )


def _cifar(name, counts, depth, k, bc, c10_err=None, c100_err=None):
    per_block = (depth - 4) // (6 if bc else 3)
    config = dict(
        growth_rate=k, block_config=(per_block,) * 3,
        num_init_features=2 * k if bc else 16, bn_size=4 if bc else 0,
        compression=0.5 if bc else 1.0, drop_rate=0.0, num_classes=10, stem="cifar",
    )
    source = "paper Table 2"
    refs = () if c10_err is None else (
        Reference("CIFAR-10+ error", c10_err, source),
        Reference("CIFAR-100+ error", c100_err, source),
    )
    kind = "DenseNet-BC" if bc else "DenseNet"
    _REGISTRY[name] = ModelInfo(name, "cifar", config, 32, refs, f"{kind} CIFAR, L={depth}, k={k}", *counts)


_TV = "torchvision IMAGENET1K_V1"
# Each preset: its name, (parameters, multiply-adds per image at its input size), then its
# arguments.
_imagenet("densenet121", (7_978_856, 2_834_161_664), 32, (6, 12, 24, 16), 64, 74.434, _TV,
          "densenet121-a639ec97.pth",
          (Reference("ImageNet top-1 error", 25.02, "paper Table 3"),))
_imagenet("densenet161", (28_681_000, 7_727_907_072), 48, (6, 12, 36, 24), 96, 77.138, _TV,
          "densenet161-8d451a50.pth")
_imagenet("densenet169", (14_149_480, 3_359_843_328), 32, (6, 12, 32, 32), 64, 75.600, _TV,
          "densenet169-b2777c0a.pth",
          (Reference("ImageNet top-1 error", 23.80, "paper Table 3"),))
_imagenet("densenet201", (20_013_928, 4_291_365_888), 32, (6, 12, 48, 32), 64, 76.896, _TV,
          "densenet201-c1103571.pth",
          (Reference("ImageNet top-1 error", 22.58, "paper Table 3"),))
_imagenet("densenet264", (33_337_704, 5_751_653_376), 32, (6, 12, 64, 48), 64, 100 - 22.15,
          "paper Table 3, 100 - error")
# Not in the paper: the smallest DenseNet-BC (6 bottleneck layers a block), for small data.
_cifar("densenet_bc40_k12", (176_122, 72_365_352), 40, 12, True)
_cifar("densenet40_k12", (1_019_722, 264_812_928), 40, 12, False, 5.24, 24.42)
_cifar("densenet100_k12", (6_979_642, 1_769_516_448), 100, 12, False, 4.10, 20.20)
_cifar("densenet100_k24", (27_249_082, 6_889_347_744), 100, 24, False, 3.74, 19.25)
_cifar("densenet_bc100_k12", (769_162, 287_929_692), 100, 12, True, 4.51, 22.27)
_cifar("densenet_bc250_k24", (15_324_406, 5_418_785_724), 250, 24, True, 3.62, 17.60)
_cifar("densenet_bc190_k40", (25_624_430, 9_301_945_740), 190, 40, True, 3.46, 17.18)


def list_models() -> list[str]:
    """Names of the registered presets, ImageNet first, in registration order."""
    return list(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    """The preset called ``name``; an unknown name raises with the nearest names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `densenet-trt models`"
        raise DenseNetTRTError(f"unknown model {name!r}: {hint}") from None


def model_config(name: str, num_classes: int | None = None, **overrides: Any) -> dict[str, Any]:
    """The DenseNet arguments of preset ``name`` with ``overrides`` applied."""
    info = get_model_info(name)
    config = dict(info.config)
    unknown = sorted(set(overrides) - _DENSENET_ARGS)
    if unknown:
        raise DenseNetTRTError(
            f"unknown DenseNet argument(s) {', '.join(unknown)}; known: {', '.join(sorted(_DENSENET_ARGS))}"
        )
    config.update(overrides)
    if num_classes is not None:
        config["num_classes"] = num_classes
    if "block_config" in config:
        config["block_config"] = tuple(config["block_config"])
    return config


_DENSENET_ARGS = {
    "growth_rate", "block_config", "num_init_features", "bn_size", "compression",
    "drop_rate", "num_classes", "stem", "memory_efficient", "in_channels",
}


def preset_stats(name: str) -> dict[str, Any]:
    """Parameters and multiply-adds of preset ``name`` at its default input size, as recorded
    (``count_preset`` counts them from the model)."""
    info = get_model_info(name)
    return {"parameters": info.parameters, "macs": info.macs}


def count_preset(name: str) -> dict[str, Any]:
    """Parameters and multiply-adds of preset ``name`` at its default input size, counted from
    the model built on the meta device (no memory, no arithmetic; about a second a preset)."""
    import torch

    from .network import DenseNet, count_macs, count_parameters

    info = get_model_info(name)
    with torch.device("meta"):
        model = DenseNet(**info.config)
    return {
        "parameters": count_parameters(model),
        "macs": count_macs(model, info.image_size, model.in_channels),
    }


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    **overrides: Any,
) -> DenseNet:
    """The preset ``name`` as a DenseNet in eval mode.

    Args:
        name: a preset of ``list_models()``.
        num_classes: classifier outputs; by default the checkpoint's, else the preset's. A
            different number than the checkpoint's re-initialises the classifier, with a warning.
            The input channels likewise come from the checkpoint (a grayscale model has 1).
        weights: a checkpoint path (``.pth``, ``.pt``, ``.safetensors``), or ``"imagenet"`` for
            torchvision's checkpoint already in torch's hub cache (never downloaded). ``None``
            leaves the weights random.
        overrides: DenseNet arguments that replace the preset's (``memory_efficient=True``, ...).
    """
    from .network import DenseNet
    from .weights import checkpoint_in_channels, checkpoint_num_classes, load_weights, read_state_dict

    info = get_model_info(name)
    state = None
    if weights is not None:
        path = weights_path(info, weights)
        state = read_state_dict(path)
        if num_classes is None:
            num_classes = checkpoint_num_classes(state)
        if "in_channels" not in overrides and checkpoint_in_channels(state) is not None:
            overrides["in_channels"] = checkpoint_in_channels(state)
    model = DenseNet(**model_config(name, num_classes, **overrides))
    if state is not None:
        load_weights(model, state, source=str(path))
    return model.eval()


def pretrained_path(info: ModelInfo) -> Path:
    """torchvision's checkpoint of preset ``info`` in torch's hub cache, where it was put by
    torchvision or by hand. The tool never downloads: a missing file raises with its address."""
    if info.pretrained_file is None:
        raise DenseNetTRTError(
            f"no published checkpoint for {info.name}; train one and pass its path as weights=PATH"
        )
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / info.pretrained_file
    if not path.is_file():
        raise DenseNetTRTError(
            f"pretrained weights for {info.name} are not on this machine and are never downloaded: "
            f"get {info.pretrained_url} and pass its path as weights=PATH (or put it at {path})"
        )
    return path


# torchvision's ImageNet class names, as its DenseNet weights' metadata has them
# (``DenseNet121_Weights.IMAGENET1K_V1.meta["categories"]``; the same for the four presets).
IMAGENET_CATEGORIES = Path(__file__).with_name("imagenet_categories.txt")


def checkpoint_labels(record: dict[str, Any]) -> list[str] | None:
    """The class names of the model ``record`` (``model_record``) describes, where they are
    known: torchvision's ImageNet categories for its own checkpoint of the preset (its file
    name, as torchvision and torch's hub cache keep it) with the 1000 classes; else None."""
    info = get_model_info(record["name"])
    weights = record["weights"]
    if weights is None or info.pretrained_file != Path(weights["file"]).name or record["num_classes"] != 1000:
        return None
    return IMAGENET_CATEGORIES.read_text(encoding="utf-8").splitlines()


def weights_path(info: ModelInfo, weights: str | os.PathLike | None) -> Path | None:
    """The checkpoint file ``weights`` names for preset ``info``: a path, or a tag such as
    ``"imagenet"`` for torchvision's file; None for random weights."""
    from .weights import PRETRAINED_TAGS

    if weights is None:
        return None
    return pretrained_path(info) if weights in PRETRAINED_TAGS else Path(weights)


def reference_model(
    name: str, weights: Path | None, num_classes: int | None, seed: int, overrides: dict[str, Any]
) -> DenseNet:
    """The float32 eval model an engine is built from and compared with; random weights come
    from ``seed`` and do not disturb the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, num_classes=num_classes, weights=weights, **overrides)


def model_record(
    name: str, net: DenseNet, weights: Path | None, seed: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    """What a manifest or calibration report says about the model: enough to make it again."""
    return {
        "name": name,
        "config": {**net.config, "block_config": list(net.config["block_config"])},
        "num_classes": net.classifier.out_features,
        "weights": None if weights is None else {
            "file": str(Path(weights).resolve()), "sha256": sha256_file(weights)},
        "seed": seed,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
    }
