"""Is it really int8? How many of an int8 engine's compute layers run in int8 and how many in
float, and how many precision conversions sit between them, from the runtime's own account,
which its backend's runtime hands over (``Runtime.layer_precisions``):

- OpenVINO: the compiled model's runtime graph (``get_runtime_model()``), each layer's
  ``layerType`` and ``runtimePrecision``; conversions are the FakeQuantize layers (float to
  int8) and the Reorders between layers whose output precision differs from their input's.
- ONNX Runtime: the graph after its optimizations (``SessionOptions.optimized_model_filepath``):
  integer kernels (QLinearConv, ConvInteger, QGemm, ...) against float ones (Conv, Gemm, ...;
  those fed by DequantizeLinear are Q/DQ pairs it left unfused); conversions are the
  QuantizeLinear and DequantizeLinear nodes left.

Computed when asked (``build`` and ``info`` print it for int8 engines), not recorded.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

ORT_INT8 = ("QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "QLinearAveragePool",
            "QLinearGlobalAveragePool", "QAttention")
ORT_FLOAT = ("Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "NhwcFusedConv", "AveragePool")
ORT_CONVERSIONS = ("QuantizeLinear", "DequantizeLinear")
ORT_POOLING = ("QLinearAveragePool", "QLinearGlobalAveragePool")
OV_COMPUTE = ("Convolution", "FullyConnected", "MatMul", "Deconvolution", "Pooling")
OV_INT8 = ("i8", "u8")
OV_CONVERTERS = ("Reorder", "FakeQuantize", "Convert")


@dataclasses.dataclass(frozen=True)
class LayerPrecisions:
    """The compute layers of an engine by the precision they run in, and the conversions."""

    int8: int
    float: int
    conversions: int
    unfused_qdq: int  # ONNX Runtime: float kernels fed by DequantizeLinear (0 elsewhere)
    kinds: dict[str, int]  # per layer kind and precision, as the runtime names them
    pooling: int = 0  # of the int8 layers, those that pool (the rest: convolutions, fully connected)

    def text(self) -> str:
        """Counted as ``calibrate`` counts its quantized layers (``calibration.layer_counts``):
        those with weights apart from the pooling, which may be one more here: a pooling layer
        with no quantizer of its own (max-pooling) runs in int8 where its input is int8."""
        total = self.int8 + self.float
        unfused = f" ({self.unfused_qdq} of them Q/DQ pairs left unfused)" if self.unfused_qdq else ""
        return (f"{self.int8} of {total} compute layers in int8 ({self.int8 - self.pooling} convolution and "
                f"linear, {self.pooling} pooling), {self.float} in float{unfused}; "
                f"{self.conversions} precision conversions")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def onnxruntime_precisions(graph: Any) -> LayerPrecisions:
    """The layer precisions of ONNX Runtime's optimized ``graph`` (an ONNX ``GraphProto``)."""
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    kinds = collections.Counter(n.op_type for n in graph.node
                                if n.op_type in ORT_INT8 + ORT_FLOAT + ORT_CONVERSIONS)
    unfused = sum(1 for n in graph.node if n.op_type in ORT_FLOAT
                  and any(made_by.get(name) == "DequantizeLinear" for name in n.input))
    return LayerPrecisions(
        int8=sum(kinds[k] for k in ORT_INT8), float=sum(kinds[k] for k in ORT_FLOAT),
        conversions=sum(kinds[k] for k in ORT_CONVERSIONS), unfused_qdq=unfused, kinds=dict(sorted(kinds.items())),
        pooling=sum(kinds[k] for k in ORT_POOLING),
    )


def openvino_precisions(runtime: Any) -> LayerPrecisions:
    """The layer precisions of OpenVINO's ``runtime`` graph (a compiled model's ``get_runtime_model()``)."""

    def info(op, key: str) -> str:
        table = op.get_rt_info()
        return table[key].astype(str) if key in table else ""

    kinds: collections.Counter[str] = collections.Counter()
    int8 = floating = conversions = 0
    for op in runtime.get_ordered_ops():
        kind, precision = info(op, "layerType"), info(op, "runtimePrecision")
        if kind in OV_COMPUTE:
            kinds[f"{kind} {precision}"] += 1
            int8 += precision in OV_INT8
            floating += precision not in OV_INT8
        elif kind in OV_CONVERTERS:
            before = {info(port.get_node(), "outputPrecisions") for port in
                      (i.get_source_output() for i in op.inputs()[:1])}
            if kind == "FakeQuantize" or before != {info(op, "outputPrecisions")}:
                kinds[kind] += 1
                conversions += 1
    pooling = sum(n for kind, n in kinds.items() if kind.split()[0] == "Pooling" and kind.split()[-1] in OV_INT8)
    return LayerPrecisions(int8, floating, conversions, 0, dict(sorted(kinds.items())), pooling)
