"""Graph capture: torch.export (dynamic batch), ONNX, frozen TorchScript.

These are what the backends compile. ``export_model`` writes one of them to disk and checks
the file it wrote against eager PyTorch before it keeps it.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .artifact import atomic_path, check_writable
from .errors import DenseNetTRTError
from .spec import BatchRange
from .verify import TOLERANCES, Comparison, compare

FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "exported-program": ".pt2"}
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM_NAME = "batch"
DEFAULT_OPSET = 18
MIN_OPSET = 17


def example_input(
    batch: int, image_size: int, in_channels: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Fixed-seed standard-normal images (N, C, H, W): what ImageNet-normalised inputs look like."""
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
    x = example_input(capture_batch(batch), image_size, _in_channels(model), dtype=dtype).to(device)
    with torch.no_grad():
        return torch.export.export(model.eval(), (x,), dynamic_shapes=batch_dynamic_shapes(batch))


def batch_dynamic_shapes(batch: BatchRange) -> tuple[dict[int, Any]] | None:
    """torch.export's ``dynamic_shapes`` for a model with one input whose batch spans ``batch``."""
    if not batch.dynamic:
        return None
    return ({0: torch.export.Dim(BATCH_DIM_NAME, min=batch.min, max=batch.max)},)


def capture_torchscript(model: nn.Module, optimize: bool = False) -> torch.jit.ScriptModule:
    """``model`` scripted and frozen (weights folded in as constants); ``optimize`` also runs
    ``torch.jit.optimize_for_inference``, which ties the module to this machine's kernels."""
    with warnings.catch_warnings():
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
    opset: int = DEFAULT_OPSET,
    dtype: torch.dtype = torch.float32,
):
    """``model`` as an ONNX ModelProto with input ``input``, output ``logits`` and, for a
    dynamic range, a batch dimension named ``batch``."""
    require_onnx()
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise DenseNetTRTError(f"ONNX opset {opset!r} is not supported; use {MIN_OPSET} or newer")
    program = capture_exported_program(model, batch, image_size, dtype)
    x = example_input(capture_batch(batch), image_size, _in_channels(model), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program, (x,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, dynamo=True, external_data=False, verbose=False,
        )
    proto = onnx_program.model_proto
    if batch.dynamic:
        _rename_batch_dim(proto)
    return proto


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


def _in_channels(model: nn.Module) -> int:
    return int(getattr(model, "in_channels", 3))


def _write(model: nn.Module, fmt: str, path: Path, batch: BatchRange, image_size: int, opset: int) -> None:
    if fmt == "exported-program":
        torch.export.save(capture_exported_program(model, batch, image_size), str(path))
    elif fmt == "torchscript":
        torch.jit.save(capture_torchscript(model), str(path))
    else:
        import onnx

        onnx.save(capture_onnx(model, batch, image_size, opset), str(path))


def load_capture(fmt: str, path: str | os.PathLike) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable that runs the captured graph at ``path`` on a float32 CPU tensor."""
    path = str(path)
    if fmt == "exported-program":
        return torch.export.load(path).module()
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(path, map_location="cpu")
    require_onnx()
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def check_against_eager(
    model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], batch: BatchRange, image_size: int
) -> dict[int, Comparison]:
    """``run`` against eager ``model`` at each of min, opt and max batch; raises if outside
    the float32 tolerance."""
    tol = TOLERANCES["fp32"]
    results = {}
    for n in batch.sizes():
        x = example_input(n, image_size, _in_channels(model), seed=n)
        with torch.no_grad():
            ref = model.eval()(x)
            out = run(x)
        cmp = compare(ref, out, tol)
        if not cmp.passes():
            raise DenseNetTRTError(
                f"captured graph differs from eager PyTorch at batch {n}: {cmp} "
                f"(float32 tolerance: abs {tol.atol} + rel {tol.rtol})"
            )
        results[n] = cmp
    return results


def export_model(
    model: nn.Module,
    fmt: str,
    output: str | os.PathLike,
    batch: BatchRange | str = "1",
    image_size: int = 224,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[int, Comparison]:
    """Write ``model`` captured as ``fmt`` to ``output`` and check the written file against
    eager PyTorch at min, opt and max batch. Nothing is left at ``output`` if either fails.
    ``progress`` is called with a line as each stage starts."""
    if fmt not in FORMATS:
        raise DenseNetTRTError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_onnx()
    batch = BatchRange.parse(batch)
    path = check_writable(output, force)
    with atomic_path(path) as tmp:
        progress(f"capturing as {fmt} (batch {batch}, {image_size}x{image_size})")
        _write(model, fmt, tmp, batch, image_size, opset)
        progress(f"checking {path.name} against eager PyTorch at batch {', '.join(map(str, batch.sizes()))}")
        return check_against_eager(model, load_capture(fmt, tmp), batch, image_size)
