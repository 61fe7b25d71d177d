"""Host memory: what a build needs, estimated before the model is made, and what this machine has.

A huge batch, image size or class count would otherwise run the machine out of memory (or
crash in an allocation) part way through a build. The estimate, in bytes of float32::

    PROCESS + 4 x (PARAMETER_COPIES x parameters + ENGINE_AND_EAGER x max batch x per-image floats)

``parameters`` are counted from the architecture (no model is made). The per-image
floats bound what a DenseNet holds while it runs one image: the input and the logits (twice
each), the stem's output (3 x its channels x its side squared), and per dense block, at its
widest, the features so far, their concatenation and its normalised copy (3 x the block's
output channels C) and the bottleneck's two tensors (2 x bn_size x growth rate), each over the
block's side squared. Eager PyTorch frees a block before the next; the blocks are summed all
the same, as a compiled engine may keep their buffers apart. ``PROCESS`` is Python with torch
and a backend loaded. Measured on a CPU machine (peak RSS of the build process against the
estimate): densenet121, batch 1:8:32, 224x224, ONNX Runtime: 1.6 against 3.1 GiB;
densenet_bc40_k12, batch 1:256:256, 32x32, ONNX Runtime and OpenVINO: 1.4 against 2.2 GiB.
"""

from __future__ import annotations

from typing import Any

from ..errors import DenseNetTRTError
from ..machine import machine_memory
from ..model.network import transition_features
from .spec import BatchRange

# The eager reference, the copy a backend compiles, the captured graph, the loaded engine, and
# for int8 the fake-quantized model and its copy.
PARAMETER_COPIES = 6
# The accuracy gate runs eager PyTorch and the engine at each batch size; an engine's runtime
# keeps its buffers between runs.
ENGINE_AND_EAGER = 2
GIB = 1 << 30
PROCESS = GIB  # measured 0.5 GiB before a build starts


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of a DenseNet of ``config`` (its arguments, as ``model_config`` gives them),
    counted from the architecture without making it (a model on the meta device costs seconds
    the first time: its initialisers load torch's compiler)."""
    k, bn, width = config["growth_rate"], config["bn_size"], config["num_init_features"]
    kernel = 49 if config["stem"] == "imagenet" else 9
    total = config.get("in_channels", 3) * width * kernel + (2 * width if config["stem"] == "imagenet" else 0)
    for i, layers in enumerate(config["block_config"]):
        if i:  # the transition before this block: BN and a 1x1 convolution
            out = transition_features(width, float(config["compression"]))
            total, width = total + 2 * width + width * out, out
        for _ in range(layers):  # BN, then 1x1 to bn_size*k, BN and 3x3 to k; or BN and 3x3 to k
            total += 2 * width + (width * bn * k + 2 * bn * k + bn * k * k * 9 if bn else width * k * 9)
            width += k
    return total + 2 * width + (width + 1) * config["num_classes"]


def image_floats(config: dict[str, Any], image_size: int) -> int:
    """Floats one image takes through a DenseNet of ``config`` at ``image_size`` (see above)."""
    k, bn, width = config["growth_rate"], config["bn_size"], config["num_init_features"]
    side = image_size if config["stem"] == "cifar" else (image_size + 2 * 3 - 7) // 2 + 1
    total = 2 * config.get("in_channels", 3) * image_size**2 + 2 * config["num_classes"] + 3 * width * side**2
    if config["stem"] == "imagenet":
        side = (side + 2 - 3) // 2 + 1  # the 3x3/2 max-pool
    for i, layers in enumerate(config["block_config"]):
        if i:  # the transition before this block
            width, side = transition_features(width, float(config["compression"])), side // 2
        width += layers * k
        total += (3 * width + 2 * bn * k) * side**2
    return total


def build_memory(config: dict[str, Any], batch: BatchRange, image_size: int) -> tuple[int, int]:
    """Bytes a build of a DenseNet of ``config`` needs: (the process and the parameters' copies,
    the activations)."""
    activations = ENGINE_AND_EAGER * batch.max * image_floats(config, image_size)
    return PROCESS + 4 * PARAMETER_COPIES * parameter_count(config), 4 * activations


def check_build_memory(config: dict[str, Any], batch: BatchRange, image_size: int) -> None:
    """Refuse a build whose estimate exceeds this machine's memory, naming both."""
    try:
        weights, activations = build_memory(config, batch, image_size)
    except (TypeError, ValueError, KeyError):
        return  # arguments DenseNet refuses, with their own error, when the model is made
    have = machine_memory()
    if weights + activations > have:
        raise DenseNetTRTError(
            f"this build needs about {_gib(weights + activations)} of memory ({_gib(weights)} for the "
            f"process and {config['num_classes']:,}-class weights, {_gib(activations)} for batch "
            f"{batch.max} of {image_size}x{image_size} images) but this machine has {_gib(have)}; "
            "use a smaller batch=MIN:OPT:MAX, image_size=N or num_classes=N"
        )


def _gib(n: int) -> str:
    return f"{n / GIB:,.1f} GiB"
