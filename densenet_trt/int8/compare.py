"""Where an engine departs from eager PyTorch: the output of each part of the network (stem,
dense blocks, transitions, logits) compared with eager float32's, for every precision.

Eager float32 (and, for int8 engines, ModelOpt's fake-quantized model) give each part's output
through forward hooks. The engine's runtime gives them where it can (``Runtime.exposed``): ONNX
Runtime engines by adding the part's last tensor as a graph output of a second session (found by
the module scope the ONNX exporters record, ``graph_parts``); OpenVINO engines by adding it as an
output of the IR (its tensor names are those of the ONNX capture the build converted, captured
again). Other backends expose no intermediate tensors: only their logits are compared, and the
report says so.

Adding outputs could in principle change what a runtime fuses or in what precision it runs a
layer, so the graph with the outputs added also gives its logits, compared with the engine's
own (``Comparison.exposed``): bit-identical means the parts' readings are the engine's. (On
densenet121 and the digits model, OpenVINO fp32/bf16/int8 and ONNX Runtime fp32 were
bit-identical, OpenVINO's runtime graph gaining only a Reorder and an Output per added output;
ONNX Runtime int8, with its own Q/DQ placement, fuses differently with the parts exposed.)
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import torch
from torch import nn

from .calibration import engine_calibration
from ..engine.capture import example_input
from ..engine.load import Engine, engine_reference, load
from ..defaults import COMPARE_SAMPLES, RANDOM_SEED
from ..errors import DenseNetTRTError
from ..engine.graph_parts import LOGITS
from ..engine.spec import Precision


def stages(net: nn.Module) -> list[tuple[str, str]]:
    """The parts compared, in order, each with the module whose output it is: the stem (its last
    module), each dense block and transition, and the logits."""
    found, stem = [], []
    for name, _ in net.features.named_children():
        if name.startswith(("denseblock", "transition")):
            found.append((name, f"features.{name}"))
        elif not found:
            stem.append(name)
    return [("stem", f"features.{stem[-1]}")] * bool(stem) + found + [(LOGITS, "")]


@dataclasses.dataclass(frozen=True)
class Error:
    """One output against eager float32's."""

    sqnr_db: float | None  # None: identical
    max_abs: float
    cosine: float

    @classmethod
    def of(cls, out: torch.Tensor, ref: torch.Tensor) -> Error:
        out, ref = out.double().flatten(), ref.double().flatten()
        error = float((out - ref).pow(2).sum())
        cosine = float(torch.nn.functional.cosine_similarity(out, ref, dim=0))
        sqnr = None if error == 0 else round(10 * math.log10(max(float(ref.pow(2).sum()), 1e-30) / error), 2)
        return cls(sqnr, float((out - ref).abs().max()), cosine)

    def text(self) -> str:
        sqnr = "exact" if self.sqnr_db is None else f"{self.sqnr_db:.1f} dB"
        return f"{sqnr:>9} {self.max_abs:>10.3g} {self.cosine:>9.6f}"


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    shape: list[int]
    engine: Error | None  # None: the backend does not expose it
    fake_quantized: Error | None  # int8: ModelOpt's fake-quantized model against float


@dataclasses.dataclass(frozen=True)
class Comparison:
    engine: str
    backend: str
    precision: str
    inputs: str
    samples: int
    stages: list[Stage]
    note: str | None  # why intermediate outputs are missing
    exposed: Error | None  # the logits of the graph with the parts' outputs added, against the engine's

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        int8 = any(s.fake_quantized for s in self.stages)
        head = f"{'stage':<13} {'shape':<14} {'SQNR':>9} {'max abs':>10} {'cosine':>9}"
        lines = [f"{self.engine} ({self.backend} {self.precision}) against eager float32 on {self.samples} "
                 f"{self.inputs}:", head + ("   | fake-quantized:  SQNR    max abs    cosine" if int8 else "")]
        for s in self.stages:
            engine = s.engine.text() if s.engine else f"{'-':>9} {'-':>10} {'-':>9}"
            shape = "x".join(map(str, s.shape))
            lines.append(f"{s.name:<13} {shape:<14} {engine}" + (f"   | {s.fake_quantized.text():>31}"
                                                                  if s.fake_quantized else ""))
        if self.note:
            lines.append(self.note)
        if self.exposed is not None:
            lines.append(exposed_text(self.exposed))
        return "\n".join(lines) + "\n"


def exposed_text(error: Error) -> str:
    """What the logits of the graph with the parts' outputs added, against the engine's own,
    say about the parts' readings."""
    if error.sqnr_db is None:
        return "with the parts' outputs added, the logits are bit-identical to the engine's: the readings are its own"
    return (f"with the parts' outputs added, the logits differ from the engine's own (max abs {error.max_abs:.3g}, "
            f"SQNR {error.sqnr_db:.1f} dB): the runtime computed differently with them exposed, so the parts' "
            "readings are of that graph, not exactly of the engine")


def eager_stages(model: nn.Module, x: torch.Tensor, names: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Each stage's output of eager ``model`` on ``x``, through forward hooks."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in names:
        if module:
            def hook(_, __, out, name=name):
                outputs[name] = out.detach().clone()

            handles.append(model.get_submodule(module).register_forward_hook(hook))
    try:
        with torch.no_grad():
            outputs[LOGITS] = model(x).detach().clone()
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def compare_engine(
    path: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    samples: int = COMPARE_SAMPLES,
    seed: int = RANDOM_SEED,
    weights: str | os.PathLike | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Comparison:
    """The engine at ``path`` against eager float32, part by part, on ``samples`` inputs:
    from ``data`` (a .npz, .npy or image folder), else an int8 engine's calibration gate
    inputs, else random inputs of ``seed``."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DenseNetTRTError(f"samples must be a positive integer, got {samples!r}")
    engine = load(path)
    net = engine_reference(engine, weights)
    names = stages(net)
    x, what = _inputs(engine, data, samples, seed)
    quantized = engine_calibration(engine).quantized_model(net) if engine.precision is Precision.INT8 else None
    answer = engine.runtime.exposed(names, net, quantized, progress)
    runner, note = (None, answer) if isinstance(answer, str) else (answer, None)
    found: dict[str, list[torch.Tensor]] = {}
    for batch in _batches(x, engine):
        parts = runner(batch) if runner else {}
        outputs = {"ref": eager_stages(net, batch, names), "engine": {**parts, LOGITS: engine(batch)},
                   "exposed": {LOGITS: parts[LOGITS]} if runner else {}}
        if quantized is not None:
            outputs["fake"] = eager_stages(quantized, batch, names)
        for kind, values in outputs.items():
            for stage, value in values.items():
                found.setdefault(f"{kind}/{stage}", []).append(value)
    joined = {key: torch.cat(values) for key, values in found.items()}
    result = [Stage(name, list(joined[f"ref/{name}"].shape[1:]),
                    Error.of(joined[f"engine/{name}"], joined[f"ref/{name}"]) if f"engine/{name}" in joined else None,
                    Error.of(joined[f"fake/{name}"], joined[f"ref/{name}"]) if quantized is not None else None)
              for name, _ in names]
    missing = [s.name for s in result if s.engine is None]
    if runner and missing:
        note = f"not found in the {engine.backend} graph: {', '.join(missing)}"
    exposed = Error.of(joined[f"exposed/{LOGITS}"], joined[f"engine/{LOGITS}"]) if runner else None
    return Comparison(str(engine.path), engine.backend, str(engine.precision), what,
                      len(joined[f"ref/{LOGITS}"]), result, note, exposed)


def _inputs(engine: Engine, data: str | os.PathLike | None, samples: int, seed: int) -> tuple[torch.Tensor, str]:
    if data is not None:
        from ..model.data import load_data

        dataset = load_data(data, preprocess=engine.manifest.preprocessing, samples=samples, seed=seed)
        dataset.check_for_model(engine.in_channels, engine.image_size)
        return torch.from_numpy(dataset.images), f"inputs from {data}"
    if engine.precision is Precision.INT8:
        return engine_calibration(engine).gate_inputs()[:samples], "gate inputs of its calibration"
    return example_input(samples, engine.image_size, engine.in_channels, seed), f"random inputs (seed {seed})"


def _batches(x: torch.Tensor, engine: Engine) -> list[torch.Tensor]:
    """``x`` in runs the engine's batch range takes (repeated up to its least batch)."""
    while len(x) < engine.batch.min:
        x = torch.cat([x, x])
    size = min(engine.batch.max, len(x))
    return [x[i:i + size] for i in range(0, len(x) - size + 1, size)]
