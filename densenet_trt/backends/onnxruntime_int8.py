"""The onnxruntime backend's own INT8 placement: its calibrator's activation ranges and its QDQ quantizer.

ModelOpt quantizes convolution inputs and weights only, and ONNX Runtime fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv only where a convolution's output
is quantized too: from ModelOpt's Q/DQ ONNX it runs almost every convolution in float. So the
onnxruntime backend's int8 engines are placed by ``onnxruntime.quantization`` instead:

- at calibrate time (``calibrate_ranges``), the float model's ONNX capture, after ORT's
  ``quant_pre_process`` (``prepared_model``), runs
  ORT's calibrator (``create_calibrator``/``collect_data``/``compute_data``) on the calibration
  batches; the ranges (tensor name -> low, high) go into the calibration folder;
- at build time (``qdq_model``), the same capture for the engine's batch range is quantized by
  ORT's ``QDQQuantizer`` from those ranges (no data): QDQ, uint8 activations, int8 per-channel
  weights (U8S8), the calibration's float layers left alone.

``calibrate`` reads it too (``quantize.py``), and ``sensitivity.QDQEvaluator`` scores its QDQ model.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..engine.capture import INPUT_NAME, capture_onnx
from ..errors import DenseNetTRTError
from ..progress import say, step
from ..engine.spec import BatchRange
from .base import Int8Placement

# Named as the calibration report's section that holds its ranges and its gate.
PLACEMENT = Int8Placement("onnxruntime", own=True)
QUANTIZER = "onnxruntime.quantization (QDQ U8S8 per-channel)"
# The calibration's method, as ONNX Runtime's calibrator names its own (its MinMax for mse:
# ModelOpt's mse searches weight ranges, which ORT's per-channel weights take from max).
ORT_METHODS = {"max": "MinMax", "mse": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def _op_types() -> list[str]:
    """What quantize_static quantizes by default: every op its QDQ and QOperator registries know."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantization tools log to the root logger (a warning per BatchNorm weight
    they do not quantize per channel, advice to pre-process); nothing a user can act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def prepared_model(net: nn.Module, batch: BatchRange, image_size: int):
    """``net`` captured as ONNX for ``batch`` and pre-processed as ORT's quantization tools
    expect (``quant_pre_process``: shape inference, BatchNorm folded into the convolution before it)."""
    from onnxruntime.quantization import quant_pre_process
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    proto = capture_onnx(net.eval(), batch, image_size)
    with tempfile.TemporaryDirectory() as tmp, _quiet(), step(
            say, "pre-processing the ONNX graph for ONNX Runtime's quantizer", "pre-processed"):
        quant_pre_process(proto, str(Path(tmp) / "float.onnx"))
        return load_model_with_shape_infer(Path(tmp) / "float.onnx")


def calibrate_ranges(model, batches: Callable[[], Iterator[torch.Tensor]], method: str,
                     percentile: float) -> dict[str, list[float]]:
    """ORT's calibrator's range [low, high] for every tensor it calibrates in the prepared
    ``model``, from ``batches()``. A histogram method (entropy, percentile) cuts only the
    tensors ModelOpt's method cuts too, the inputs of the layers (``layer_inputs``); every other
    tensor ORT quantizes (convolution outputs, concatenations, BatchNorm inputs) gets the range
    it was seen to take (MinMax): cut there, percentile 99 cost the digits model 6.75 points of
    top-1 where ModelOpt's placement lost 4.25, and no layers kept in float won them back."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = ({INPUT_NAME: x.numpy()} for x in batches())

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    extra = {"percentile": percentile} if method == "percentile" else {}
    with tempfile.TemporaryDirectory() as tmp, _quiet(), step(
            say, f"calibrating ONNX Runtime's ranges ({ORT_METHODS[method]})", "calibrated"):
        onnx.save(model, str(Path(tmp) / "float.onnx"))
        calibrator = create_calibrator(
            Path(tmp) / "float.onnx", _op_types(), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, ORT_METHODS[method]), extra_options=extra)
        with contextlib.redirect_stdout(io.StringIO()):  # its histogram methods print() what they do
            calibrator.collect_data(Reader())
            ranges = {name: data.range_value for name, data in calibrator.compute_data().items()}
    if ORT_METHODS[method] != "MinMax":
        cut = layer_inputs(model)
        seen = calibrator.collector.histogram_dict  # per tensor: histogram, edges, min, max, threshold
        ranges = {name: value if name in cut else seen[name][2:4] for name, value in ranges.items()}
    return {name: [float(np.asarray(low).item()), float(np.asarray(high).item())]
            for name, (low, high) in sorted(ranges.items())}


def layer_inputs(model) -> set[str]:
    """The activations ModelOpt's input quantizers calibrate: what convolutions, the classifier
    (Gemm) and average pools read."""
    return {node.input[0] for node in model.graph.node if node.op_type in ("Conv", "Gemm", "AveragePool")}


def qdq_model(model, ranges: dict[str, list[float]], float_layers: list[str], calibration: str):
    """The prepared float ``model`` as ORT's QDQ model (U8S8, per-channel) from ``ranges``, with
    ``float_layers`` (layer names) left in float; ``calibration`` names where the ranges came from."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    missing = sorted(calibrated_tensors(model) - set(ranges))
    if missing:
        raise DenseNetTRTError(
            f"the calibration {calibration} has no ONNX Runtime range for {len(missing)} tensors of this model's "
            f"graph (e.g. {missing[0]}): it was made with a different torch or model; recalibrate"
        )
    data = TensorsData(CalibrationMethod.MinMax, {name: TensorData(
        lowest=np.float32(low), highest=np.float32(high)) for name, (low, high) in ranges.items()})
    working = onnx.ModelProto()
    working.CopyFrom(model)  # QDQQuantizer changes the model it is given
    excluded = layer_nodes(working, float_layers)
    with _quiet(), step(say, f"placing Q/DQ with {QUANTIZER}", "placed"):
        quantizer = QDQQuantizer(working, True, False, QuantType.QInt8, QuantType.QUInt8, data, [],
                                 excluded, _op_types(), {})
        quantizer.quantize_model()
    return float_inputs(quantizer.model.model, model, set(excluded))


def float_inputs(qdq, prepared, excluded: set[str]):
    """``qdq`` with its ``excluded`` nodes reading their inputs in float, as a layer ModelOpt keeps
    in float does (its input quantizer off). ORT's QDQQuantizer leaves an excluded node's own
    Q/DQ out, but the tensor it reads still passes the Q/DQ that its producer's placement puts
    there (a Relu it folds into that Q), clipped to the calibrated range: so a layer kept in
    float won back nothing. Each such input is taken from before its Q/DQ (through the Relu
    again where ORT folded it), and Q/DQ nodes nobody reads any more are removed."""
    from onnx import helper

    producers = {out: node for node in qdq.graph.node for out in node.output}
    relus = {node.output[0] for node in prepared.graph.node if node.op_type == "Relu"}
    nodes, unclipped = [], {}
    for node in qdq.graph.node:
        for i, name in enumerate(node.input if node.name in excluded else ()):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a float tensor or a weight
            source = q.input[0]
            if source in relus and getattr(producers.get(source), "op_type", None) != "Relu" and source not in unclipped:
                unclipped[source] = f"{source}_float"
                nodes.append(helper.make_node("Relu", [source], [unclipped[source]], name=f"{source}_float_Relu"))
            node.input[i] = unclipped.get(source, source)
        nodes.append(node)
    del qdq.graph.node[:]
    qdq.graph.node.extend(_without_unread_qdq(nodes, {out.name for out in qdq.graph.output}))
    read = {name for node in qdq.graph.node for name in node.input}
    kept = [init for init in qdq.graph.initializer if init.name in read]
    del qdq.graph.initializer[:]
    qdq.graph.initializer.extend(kept)
    return qdq


def _without_unread_qdq(nodes: list, outputs: set[str]) -> list:
    while True:
        read = outputs | {name for node in nodes for name in node.input}
        kept = [n for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or n.output[0] in read]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def calibrated_tensors(model) -> set[str]:
    """The tensors ORT's calibrator records a range for (its ``select_tensors_to_calibrate``):
    float inputs and outputs, not initializers, of the nodes it quantizes."""
    from onnx import TensorProto

    infos = {v.name: v for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
    constants = {i.name for i in model.graph.initializer}
    kinds = set(_op_types())
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    return {name for node in model.graph.node if node.op_type in kinds for name in (*node.input, *node.output)
            if name in infos and name not in constants and infos[name].type.HasField("tensor_type")
            and infos[name].type.tensor_type.elem_type in floats}


def layer_nodes(model, layers: list[str]) -> list[str]:
    """The ONNX node of each layer: the node reading its weight (``LAYER.weight``), or for a
    layer without weights (a pool), the node torch's exporter put in its name scope."""
    nodes = []
    for layer in layers:
        found = [n.name for n in model.graph.node if f"{layer}.weight" in n.input] or [
            n.name for n in model.graph.node if layer in _scopes(n)]
        if not found:
            raise DenseNetTRTError(f"layer {layer} kept in float has no node in the ONNX graph; recalibrate")
        nodes += found
    return nodes


def _scopes(node) -> list[str]:
    text = next((p.value for p in node.metadata_props if p.key == _NAME_SCOPES), "[]")
    return ast.literal_eval(text)


def run_qdq(proto, images: np.ndarray, batch_size: int, threads: int | None = None) -> torch.Tensor:
    """The logits of ORT's QDQ model ``proto`` (all graph optimizations: its int8 kernels) on ``images``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = [session.run(None, {INPUT_NAME: images[i:i + batch_size]})[0]
               for i in range(0, len(images), batch_size)]
    return torch.from_numpy(np.concatenate(outputs))


def quantizer(calibration: str) -> str:
    """What an ORT-placed int8 engine's manifest records as its quantizer."""
    return f"{QUANTIZER}, ranges from calibration {calibration}"
