"""The runtimes of TensorRT engines, and what they offer beyond running: TensorRT's own
per-layer times (an ``IProfiler`` on an execution context) for raw plans (format ``engine``, of
both TensorRT backends); the other formats run inside torch, where TensorRT's profiler is not
reached. Requests in flight: one execution context per CUDA stream for a plan of one fixed shape
run by TensorRT's runtime (``tensorrt-onnx``); Torch-TensorRT's runtime runs each engine through
one execution context, which several streams would share, so one request at a time there.
Written against TensorRT 10.3's and 11.1's Python API; not run here (no GPU with TensorRT was lent)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch

from ..profiling.layers import CALLS, WARMUP_CALLS
from ._trt_api import PlanRunner, in_flight_refusal, torch_dtype
from .base import Runtime

Times = tuple[str, dict[tuple[str, str], float]]


class TorchTensorRTRuntime(Runtime):
    """An exported program, TorchScript module or AOTInductor package of TensorRT engines, run by torch."""

    def streams(self, n: int) -> list[Callable[[torch.Tensor], torch.Tensor]] | str:
        """None: Torch-TensorRT runs each engine through one execution context (its enqueue
        takes a lock: core/runtime/execute_engine.cpp), which ``n`` streams would share."""
        return (f"{self.manifest.backend} ({self.manifest.format}): one request in flight (Torch-TensorRT runs "
                "each engine through one TensorRT execution context, which several CUDA streams would share)")

    def layer_times(self, x: torch.Tensor, threads: int) -> Times | str:
        """None here: the sentence saying so, and which format has them."""
        return (f"per-layer timing is not offered by {self.manifest.backend} ({self.manifest.format}) on "
                f"{self.manifest.device.type}; build with format engine for TensorRT's per-layer times")


class PlanRuntime(TorchTensorRTRuntime):
    """A raw TensorRT plan of backend ``tensorrt`` (format ``engine``), run by Torch-TensorRT's
    ``TorchTensorRTModule``; its per-layer times from a second deserialization."""

    def layer_times(self, x: torch.Tensor, threads: int) -> Times | str:
        import tensorrt as trt

        plan = (self.folder / self.manifest.main_file).read_bytes()
        return plan_layer_times(trt, trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(plan), x)


class PlanRunnerRuntime(Runtime):
    """A raw TensorRT plan of backend ``tensorrt-onnx``, run by TensorRT's runtime (``PlanRunner``)."""

    def __init__(self, folder: Path, manifest, runner: PlanRunner):
        super().__init__(folder, manifest, runner)
        self.runner = runner

    def streams(self, n: int) -> list[Callable[[torch.Tensor], torch.Tensor]] | str:
        """An execution context per stream where the plan has one fixed shape (``in_flight_refusal``)."""
        return in_flight_refusal(self.manifest.batch) or self.runner.contexts(n)

    def layer_times(self, x: torch.Tensor, threads: int) -> Times | str:
        import tensorrt as trt

        torch.cuda.synchronize()  # the runner's own contexts are idle while the profiled one runs
        return plan_layer_times(trt, self.runner.engine, x)


def plan_layer_times(trt, cuda_engine, x: torch.Tensor) -> Times:
    """TensorRT's own per-layer times of ``cuda_engine`` on ``x``: an ``IProfiler`` on an
    execution context of its own, on a CUDA stream of its own; layer kinds are not reported (empty)."""
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
    dtypes = {name: torch_dtype(cuda_engine.get_tensor_dtype(name).name) for name in names}
    tensors = {}
    for name in inputs:
        context.set_input_shape(name, tuple(x.shape))
        tensors[name] = x.to("cuda", dtypes[name]).contiguous()
    for name in names:
        if name not in inputs:  # shapes known once the inputs' are set
            tensors[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtypes[name], device="cuda")
    for name, tensor in tensors.items():
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()  # not the legacy default stream, where TensorRT synchronizes the device
    stream.wait_stream(torch.cuda.current_stream())
    for call in range(WARMUP_CALLS + CALLS):
        profiler.counting = call >= WARMUP_CALLS
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
    return "TensorRT IProfiler", dict(profiler.totals)
