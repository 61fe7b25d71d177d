"""What the command line offers before torch loads that is not a default (``defaults.py`` holds
those): export formats, the ONNX opsets this install writes, calibration methods. Each is
defined here once and read by the module that acts on it (``capture.py``, ``export.py``,
``quantize.py``), so that ``densenet-trt --help`` and every command's ``--help`` import no
torch."""

from __future__ import annotations

# export's formats and their file suffixes.
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "exported-program": ".pt2"}

# The opsets verified to come out as asked: tried 16 to 29 and 99 with torch 2.14.1, onnxscript
# 0.7.2, onnx 1.23.2 (onnx.defs.onnx_opset_version() == 28) and onnxruntime 1.32.0. torch's
# dynamo exporter writes 18 and converts it: 18 to 28 came out as asked and ran in ONNX Runtime
# matching eager PyTorch; 17, 29 and 99 came back as 18 without an error (lowering to 17 fails
# in onnx's version converter, whose output for this graph is invalid: ReduceMean keeps
# noop_with_empty_axes). capture_onnx checks the written opset anyway, so an install that cannot
# reach one of these is refused, not worked around.
MIN_OPSET = 18
MAX_OPSET = 28

# calibrate's methods (the first is the default, defaults.CALIBRATION_METHOD).
METHODS = ("max", "entropy", "percentile", "mse")
