"""The runtimes of backend ``tensorrt``'s engines, and what they offer beyond running: TensorRT's
own per-layer times (an ``IProfiler`` on an execution context) for raw plans (format
``engine``); the other formats run inside torch, where TensorRT's profiler is not reached.
Written against TensorRT 11.1's Python API; not run here (no GPU with TensorRT was lent)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..layers import CALLS, WARMUP_CALLS
from .base import Runtime


class TorchTensorRTRuntime(Runtime):
    """An exported program, TorchScript module or AOTInductor package of TensorRT engines, run by torch."""

    def layer_times(self, x: torch.Tensor, threads: int) -> tuple[str, dict[tuple[str, str], float]] | str:
        """None here: the sentence saying so, and which format has them."""
        return (f"per-layer timing is not offered by {self.manifest.backend} ({self.manifest.format}) on "
                f"{self.manifest.device.type}; build with format engine for TensorRT's per-layer times")


class PlanRuntime(Runtime):
    """A raw TensorRT plan (format ``engine``), run by Torch-TensorRT's ``TorchTensorRTModule``."""

    def layer_times(self, x: torch.Tensor, threads: int) -> tuple[str, dict[tuple[str, str], float]] | str:
        """TensorRT's own per-layer times of the plan: an ``IProfiler`` on an execution context
        of a second deserialization; layer kinds are not reported (empty)."""
        import tensorrt as trt

        plan = (self.folder / self.manifest.main_file).read_bytes()
        cuda_engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan)
        context = cuda_engine.create_execution_context()

        class Profiler(trt.IProfiler):
            def __init__(self) -> None:
                super().__init__()
                self.counting, self.totals = False, defaultdict(float)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                if self.counting:
                    self.totals[(layer_name, "")] += ms / CALLS

        profiler = Profiler()
        context.profiler = profiler
        names = [cuda_engine.get_tensor_name(i) for i in range(cuda_engine.num_io_tensors)]
        inputs = [n for n in names if cuda_engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        tensors = {}

        def dtype(name: str) -> torch.dtype:
            return torch.from_numpy(np.empty(0, dtype=trt.nptype(cuda_engine.get_tensor_dtype(name)))).dtype

        for name in inputs:
            context.set_input_shape(name, tuple(x.shape))
            tensors[name] = x.to("cuda", dtype(name)).contiguous()
        for name in names:
            if name not in inputs:  # shapes known once the inputs' are set
                tensors[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype(name), device="cuda")
        for name, tensor in tensors.items():
            context.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.current_stream()
        for call in range(WARMUP_CALLS + CALLS):
            profiler.counting = call >= WARMUP_CALLS
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
        return "TensorRT IProfiler", dict(profiler.totals)
