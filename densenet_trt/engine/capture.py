"""Graph capture: every way the tool turns a DenseNet into a graph a runtime compiles.

torch.export programs with a dynamic batch dimension, ONNX (from torch.export), frozen
TorchScript, and the Q/DQ ONNX of a ModelOpt fake-quantized model. Below the backends and
quantize, which both use them; ``export.py`` writes them to files and checks them.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from typing import Any

import torch
from torch import nn

from ..choices import MAX_OPSET, MIN_OPSET
from ..defaults import OPSET
from ..errors import DenseNetTRTError
from ..machine import check_images_memory
from ..progress import say, step
from .spec import BatchRange

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM_NAME = "batch"


def example_input(
    batch: int, image_size: int, in_channels: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Fixed-seed standard-normal images (N, C, H, W): what ImageNet-normalised inputs look like."""
    check_images_memory(batch, in_channels, image_size)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, image_size, image_size, generator=generator)
    return x.to(dtype)


def capture_batch(batch: BatchRange) -> int:
    """The batch size to trace with: ``opt``, but at least 2 when the range is dynamic
    (torch.export specialises a dimension traced at size 1)."""
    if not batch.dynamic:
        return batch.min
    return min(max(batch.opt, 2), batch.max)


def capture_exported_program(
    model: nn.Module,
    batch: BatchRange,
    image_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.export.ExportedProgram:
    """``model`` (already in ``dtype`` on ``device``) as an ExportedProgram whose batch
    dimension spans ``batch`` (static if it is one size)."""
    x = example_input(capture_batch(batch), image_size, in_channels_of(model), dtype=dtype).to(device)
    with torch.no_grad(), step(say, "capturing the graph with torch.export", "captured"):
        return torch.export.export(model.eval(), (x,), dynamic_shapes=batch_dynamic_shapes(batch))


def batch_dynamic_shapes(batch: BatchRange) -> tuple[dict[int, Any]] | None:
    """torch.export's ``dynamic_shapes`` for a model with one input whose batch spans ``batch``."""
    if not batch.dynamic:
        return None
    return ({0: torch.export.Dim(BATCH_DIM_NAME, min=batch.min, max=batch.max)},)


def capture_torchscript(model: nn.Module, optimize: bool = False) -> torch.jit.ScriptModule:
    """``model`` scripted and frozen (weights folded in as constants); ``optimize`` also runs
    ``torch.jit.optimize_for_inference``, which ties the module to this machine's kernels."""
    with warnings.catch_warnings(), step(say, "scripting and freezing the model with TorchScript", "scripted"):
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*(jit|TorchScript).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*(jit|TorchScript).*")
        scripted = torch.jit.freeze(torch.jit.script(model.eval()))
        if optimize:
            scripted = torch.jit.optimize_for_inference(scripted)
    return scripted


def require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise DenseNetTRTError(
            f"ONNX export needs {', '.join(missing)}: pip install 'densenet-trt[onnx]'"
        )


def capture_onnx(
    model: nn.Module,
    batch: BatchRange,
    image_size: int,
    opset: int = OPSET,
    dtype: torch.dtype = torch.float32,
):
    """``model`` as an ONNX ModelProto with input ``input``, output ``logits`` and, for a
    dynamic range, a batch dimension named ``batch``."""
    require_onnx()
    check_opset(opset)
    program = capture_exported_program(model, batch, image_size, dtype)
    x = example_input(capture_batch(batch), image_size, in_channels_of(model), dtype=dtype)
    with warnings.catch_warnings(), step(say, "converting the graph to ONNX", "converted"):
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program, (x,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
    proto = onnx_program.model_proto
    _check_written_opset(proto, opset)
    if batch.dynamic:
        _rename_batch_dim(proto)
    return proto


def check_opset(opset: int) -> None:
    """Refuse an ONNX opset outside MIN_OPSET..MAX_OPSET."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise DenseNetTRTError(
            f"ONNX opset {opset!r} is not supported; use {MIN_OPSET} to {MAX_OPSET} (default {OPSET})"
        )


def onnx_opset(proto) -> int | None:
    """The version of the default (ai.onnx) domain a ModelProto imports."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _check_written_opset(proto, opset: int) -> None:
    """Refuse ``proto`` unless it is at ``opset``: torch's exporter returns its own opset where
    it cannot convert to the one asked for, without an error."""
    written = onnx_opset(proto)
    if written != opset:
        raise DenseNetTRTError(
            f"torch.onnx wrote ONNX opset {written}, not the opset {opset} asked for; "
            f"use {MIN_OPSET} to {MAX_OPSET} (those written as asked by this install's torch and onnx)"
        )


def _rename_batch_dim(proto) -> None:
    """Give the symbolic batch dimension the readable name ``batch`` everywhere it appears."""
    symbol = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if not symbol:
        return
    graph = proto.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = BATCH_DIM_NAME


def in_channels_of(model: nn.Module) -> int:
    return int(getattr(model, "in_channels", 3))


def capture_qdq_onnx(model: nn.Module, batch: BatchRange, image_size: int, opset: int = 17):
    """The fake-quantized ``model`` as ONNX with QuantizeLinear/DequantizeLinear pairs, input
    ``input``, output ``logits``, batch dimension dynamic where ``batch`` is.

    ModelOpt's quantizers export through the TorchScript-based ONNX exporter (their ONNX
    symbolic functions); torch.export cannot trace them on the CPU (their range checks branch
    on tensor values), so the dynamo exporter the float models use is not an option here."""
    import onnx

    x = example_input(capture_batch(batch), image_size, model.in_channels)
    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch.dynamic else None
    with warnings.catch_warnings(), torch.no_grad(), step(say, "capturing the fake-quantized graph as Q/DQ ONNX",
                                                          "captured"):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (x,), buffer, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
        )
    return onnx.load_from_string(buffer.getvalue())
