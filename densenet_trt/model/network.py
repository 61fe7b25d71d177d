"""DenseNet (Huang et al., "Densely Connected Convolutional Networks"), its blocks, and the
its FLOP and parameter counts (the registry of named presets is in ``registry.py``).

Module and parameter names follow torchvision's DenseNet key for key, so its checkpoints load
as they are. The same class also builds the CIFAR variants of the paper (3x3 stem, no pooling)
and DenseNets without bottleneck layers (``bn_size=0``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from ..errors import DenseNetTRTError

STEMS = ("imagenet", "cifar")


class _DenseLayerBase(nn.Module):
    """A dense layer: reads the concatenation of all earlier feature maps of its block.

    ``norm1 -> relu1 -> conv1`` on the concatenation is the part that the memory-efficient
    mode recomputes in backward instead of storing.
    """

    def __init__(self, drop_rate: float, memory_efficient: bool) -> None:
        super().__init__()
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bn_function(self, inputs: list[Tensor]) -> Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    @torch.jit.unused
    def call_checkpoint_bottleneck(self, inputs: list[Tensor]) -> Tensor:
        def closure(*tensors: Tensor) -> Tensor:
            return self.bn_function(list(tensors))

        return cp.checkpoint(closure, *inputs, use_reentrant=False)

    def first_stage(self, inputs: list[Tensor]) -> Tensor:
        # Checkpointing only pays off when a backward pass follows; in eval mode, under
        # no_grad, in TorchScript and in torch.export the plain path runs.
        if (
            self.memory_efficient
            and self.training
            and torch.is_grad_enabled()
            and not torch.jit.is_scripting()
        ):
            return self.call_checkpoint_bottleneck(inputs)
        return self.bn_function(inputs)

    def dropout(self, x: Tensor) -> Tensor:
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x


class DenseLayer(_DenseLayerBase):
    """H_l = BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k) (the bottleneck layer of DenseNet-B)."""

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__(drop_rate, memory_efficient)
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, width, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        bottleneck = self.first_stage(inputs)
        return self.dropout(self.conv2(self.relu2(self.norm2(bottleneck))))


class BasicDenseLayer(_DenseLayerBase):
    """H_l = BN-ReLU-Conv3x3(k) (the original DenseNet layer, no bottleneck)."""

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__(drop_rate, memory_efficient)
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            num_input_features, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.dropout(self.first_stage(inputs))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the output is the concatenation of the input and every layer's output."""

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            in_features = num_input_features + i * growth_rate
            if bn_size > 0:
                layer: nn.Module = DenseLayer(
                    in_features, growth_rate, bn_size, drop_rate, memory_efficient
                )
            else:
                layer = BasicDenseLayer(in_features, growth_rate, drop_rate, memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for _, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1-AvgPool2x2 between two dense blocks."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(
            num_input_features, num_output_features, kernel_size=1, stride=1, bias=False
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DenseNetTRTError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_arguments(growth_rate, block_config, num_init_features, bn_size, compression, drop_rate,
                     num_classes, stem, in_channels) -> None:
    _check_int("growth_rate", growth_rate, 1)
    _check_int("num_init_features", num_init_features, 1)
    _check_int("bn_size", bn_size, 0)
    _check_int("num_classes", num_classes, 1)
    _check_int("in_channels", in_channels, 1)
    if not block_config:
        raise DenseNetTRTError("block_config must list at least one dense block")
    for n in block_config:
        _check_int("every entry of block_config", n, 1)
    if isinstance(compression, bool) or not 0.0 < float(compression) <= 1.0:
        raise DenseNetTRTError(f"compression must be in (0, 1], got {compression!r}")
    if not 0.0 <= float(drop_rate) < 1.0:
        raise DenseNetTRTError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
    if stem not in STEMS:
        raise DenseNetTRTError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")


def _stem_layers(stem: str, in_channels: int, features: int) -> list[tuple[str, nn.Module]]:
    """ImageNet: 7x7/2 conv, BN-ReLU, 3x3/2 max-pool; CIFAR: one 3x3/1 conv."""
    if stem == "imagenet":
        return [
            ("conv0", nn.Conv2d(in_channels, features, 7, 2, 3, bias=False)),
            ("norm0", nn.BatchNorm2d(features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]
    return [("conv0", nn.Conv2d(in_channels, features, 3, 1, 1, bias=False))]


def _init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal convolutions, unit BatchNorm, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, 0)


def transition_features(num_features: int, compression: float) -> int:
    """Channels after a transition: floor(theta * m)."""
    return int(math.floor(compression * num_features))


class DenseNet(nn.Module):
    """A DenseNet for image classification.

    Args:
        growth_rate: k, the channels each dense layer adds.
        block_config: the number of layers in each dense block.
        num_init_features: channels of the stem convolution.
        bn_size: bottleneck width factor (the 1x1 conv has ``bn_size * k`` channels);
            0 for layers without a bottleneck.
        compression: theta in (0, 1]; a transition turns m channels into floor(theta * m).
        drop_rate: dropout after each dense layer (training only).
        num_classes: outputs of the classifier.
        stem: ``"imagenet"`` (7x7/2 conv, BN-ReLU, 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv).
        memory_efficient: recompute the first stage of each dense layer in backward
            (gradient checkpointing) to save memory in training; eval outputs are unchanged.
        in_channels: channels of the input image.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        stem: str = "imagenet",
        memory_efficient: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        block_config = tuple(block_config)
        _check_arguments(growth_rate, block_config, num_init_features, bn_size, compression, drop_rate,
                         num_classes, stem, in_channels)
        self.stem = stem
        self.block_config = block_config
        # The arguments, for manifests and reports.
        self.config = dict(
            growth_rate=growth_rate, block_config=block_config, num_init_features=num_init_features,
            bn_size=bn_size, compression=float(compression), drop_rate=float(drop_rate),
            num_classes=num_classes, stem=stem, memory_efficient=memory_efficient,
            in_channels=in_channels,
        )
        self.features = nn.Sequential(OrderedDict(_stem_layers(stem, in_channels, num_init_features)))

        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(
                num_layers, num_features, growth_rate, bn_size, drop_rate, memory_efficient
            )
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                out_features = transition_features(num_features, float(compression))
                if out_features < 1:
                    raise DenseNetTRTError(
                        f"compression {compression} leaves no channels after block {i + 1}"
                        f" ({num_features} channels); use a larger compression"
                    )
                self.features.add_module(f"transition{i + 1}", Transition(num_features, out_features))
                num_features = out_features
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        self.num_features = num_features
        self.in_channels = in_channels
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)


def output_size(image_size: int, stem: str, num_blocks: int) -> int:
    """Side of the last feature map for a square input of ``image_size`` pixels."""
    size = image_size
    if stem == "imagenet":
        size = (size + 2 * 3 - 7) // 2 + 1  # conv0 7x7/2, padding 3
        size = (size + 2 * 1 - 3) // 2 + 1  # pool0 3x3/2, padding 1
    for _ in range(num_blocks - 1):
        size //= 2  # transition 2x2 average pool
    return size


def min_image_size(stem: str, num_blocks: int) -> int:
    """The smallest square input whose last feature map is at least 1x1."""
    size = 1
    while output_size(size, stem, num_blocks) < 1:
        size += 1
    return size


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int, in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass of one image, counted by torch's FLOP counter
    (convolutions and the classifier; one multiply-add is two FLOPs).

    On a model built on the meta device (as ``preset_stats`` does) it costs no arithmetic.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    with counter, torch.no_grad():
        model.eval()(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
