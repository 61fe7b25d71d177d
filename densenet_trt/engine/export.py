"""Captured graphs written to files: ``export_model`` writes a torch.export program, ONNX or
frozen TorchScript (captured by ``capture.py``) and checks the written file against eager
PyTorch before it keeps it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .artifact import atomic_path, save_via_memory
from .capture import (
    INPUT_NAME,
    OUTPUT_NAME,
    capture_exported_program,
    capture_onnx,
    capture_torchscript,
    check_opset,
    example_input,
    in_channels_of,
    require_onnx,
)
from ..choices import EXPORT_FORMATS as FORMATS
from ..defaults import BATCH, OPSET
from ..errors import DenseNetTRTError
from ..progress import library_chatter
from .spec import BatchRange
from .spec import Precision
from .verify import Comparison, compare


def _write(model: nn.Module, fmt: str, path: Path, batch: BatchRange, image_size: int, opset: int) -> None:
    if fmt == "exported-program":
        save_via_memory(torch.export.save, capture_exported_program(model, batch, image_size), path)
    elif fmt == "torchscript":
        with library_chatter():
            save_via_memory(torch.jit.save, capture_torchscript(model), path)
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
    tol = Precision.FP32.tolerance
    results = {}
    for n in batch.sizes():
        x = example_input(n, image_size, in_channels_of(model), seed=n)
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
    batch: BatchRange | str = BATCH,
    image_size: int = 224,
    opset: int = OPSET,
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
        check_opset(opset)
    batch = BatchRange.parse(batch)
    name = "the output" if os.fspath(output) == "-" else Path(output).name  # atomic_path checks it
    # Room for the file first: a full disk is said before the capture, not after it.
    with atomic_path(output, force=force, expected_bytes=2 * 4 * sum(p.numel() for p in model.parameters())) as tmp:
        progress(f"capturing as {fmt} (batch {batch}, {image_size}x{image_size})")
        _write(model, fmt, tmp, batch, image_size, opset)
        progress(f"checking {name} against eager PyTorch at batch {', '.join(map(str, batch.sizes()))}")
        return check_against_eager(model, load_capture(fmt, tmp), batch, image_size)
