"""The calls into TensorRT's Python API for backend ``tensorrt-onnx``: build a plan from ONNX
bytes, and run one with torch CUDA tensors. ``trt`` is the imported ``tensorrt`` module, handed
in by the backend (which decides everything else: ``tensorrt_onnx.recipe``). Written against
the Python bindings of TensorRT 10.x and 11.1 (python/src/infer/pyCore.cpp, pyGraph.cpp,
parsers/pyOnnx.cpp); not run here (no GPU was lent).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from ..engine.artifact import atomic_path
from ..engine.capture import INPUT_NAME, OUTPUT_NAME
from ..errors import DenseNetTRTError
from ..reading import input_file
from ..engine.spec import BatchRange, BuildSpec

# TensorRT DataType member names -> torch dtypes, for the bindings of the plans run here (bf16:
# backend tensorrt's). Read directly: TensorRT 11.1's ``trt.nptype`` raises TypeError on BF16.
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16}


def torch_dtype(trt_name: str) -> torch.dtype:
    """The torch dtype of a binding whose TensorRT DataType member is named ``trt_name``."""
    if trt_name not in TORCH_DTYPES:
        raise DenseNetTRTError(f"the plan has a binding of TensorRT type {trt_name}, not one of "
                               f"{', '.join(TORCH_DTYPES)}; rebuild the engine")
    return TORCH_DTYPES[trt_name]


def profile_shapes(batch: BatchRange, in_channels: int, image_size: int) -> tuple[tuple[int, ...], ...]:
    """The optimization profile of the input: its (min, opt, max) shapes for ``batch``."""
    image = (in_channels, image_size, image_size)
    return tuple((n, *image) for n in (batch.min, batch.opt, batch.max))


def check_dla(dla_core: int | None, cores: int) -> None:
    """Refuse DLA core ``dla_core`` on a device with ``cores`` DLA cores."""
    if dla_core is not None and dla_core >= cores:
        have = (f"DLA cores 0 to {cores - 1}" if cores else
                "no DLA (of the Jetsons on TensorRT 10 and 11, AGX Orin and Orin NX have DLA; Orin Nano and Thor do not)")
        raise DenseNetTRTError(f"dla_core={dla_core}, but this device has {have}")


def make_logger(trt) -> Any:
    """A TensorRT logger that keeps the messages of errors for one-line reports (TensorRT's own
    Logger prints them and keeps nothing), and the builder's placement lines (``placement``)."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.placed: list[str] = []  # the builder's [DlaLayer] and [GpuLayer] lines

        def log(self, severity, msg) -> None:
            line = " ".join(str(msg).split())
            if severity <= trt.ILogger.ERROR:
                self.errors.append(line)
            elif line.startswith(PLACED):
                self.placed.append(line)

        def last(self) -> str:
            return self.errors[-1] if self.errors else "TensorRT gave no reason"

    return Logger()


def build_plan(trt, onnx_bytes: bytes, spec: BuildSpec, settings, recipe, cache: Path | None) -> tuple[bytes, dict]:
    """The serialized plan of the ONNX model ``onnx_bytes`` built as ``recipe`` says, and where
    the builder put its layers (``placement``); reads and writes the timing cache file ``cache``
    (None: no cache kept)."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only kind in 10 and 11
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [" ".join(str(parser.get_error(i).desc()).split()) for i in range(parser.num_errors)]
        raise DenseNetTRTError(f"TensorRT's ONNX parser refused the capture: {errors[0] if errors else logger.last()}")
    config = builder.create_builder_config()
    for name in recipe.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in recipe.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if settings.workspace_size is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_size)
    if settings.optimization_level is not None:
        config.builder_optimization_level = settings.optimization_level
    _io(trt, network, recipe.half_io)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *profile_shapes(spec.batch, spec.in_channels, spec.image_size))
    config.add_optimization_profile(profile)
    _dla(trt, builder, network, config, settings)
    kept = _read_cache(config, cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DenseNetTRTError(f"TensorRT {trt.__version__} could not build the plan: {logger.last()}")
    if kept:
        with atomic_path(cache, force=True) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), placement(logger.placed)


PLACED = ("[DlaLayer]", "[GpuLayer]")


def placement(lines: list[str]) -> dict[str, int | None]:
    """Where the builder put the network, from the lines it logs once it has placed it (TensorRT
    10 and 11, at INFO, under "Layers Running on DLA" and "... on GPU"): each ``[DlaLayer]``
    line is one subgraph DLA runs (``{ForeignNode[first...last]}``), each ``[GpuLayer]`` line
    one layer the GPU runs. None: the builder logged no placement."""
    if not lines:
        return {"dla_subgraphs": None, "gpu_layers": None}
    return {"dla_subgraphs": sum(line.startswith(PLACED[0]) for line in lines),
            "gpu_layers": sum(line.startswith(PLACED[1]) for line in lines)}


def _io(trt, network, half: bool) -> None:
    """Bindings in linear NCHW layout; float16 ones where ``half`` (TensorRT 10's fp16 recipe;
    11's strongly typed fp16 network has them from the ONNX)."""
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    names += [network.get_output(i).name for i in range(network.num_outputs)]
    if names != [INPUT_NAME, OUTPUT_NAME]:
        raise DenseNetTRTError(f"the ONNX capture's inputs and outputs are {names}, not [{INPUT_NAME}, {OUTPUT_NAME}]")
    for tensor in (network.get_input(0), network.get_output(0)):
        tensor.allowed_formats = 1 << int(trt.TensorFormat.LINEAR)
        if half:
            tensor.dtype = trt.float16


def _dla(trt, builder, network, config, settings) -> None:
    """DLA core ``settings.dla_core`` as the default device (checked against this board);
    without GPU fallback, refused before the build where DLA cannot run a layer."""
    if settings.dla_core is None:
        return
    check_dla(settings.dla_core, builder.num_DLA_cores)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = settings.dla_core
    layers = network.num_layers
    on_dla = sum(bool(config.can_run_on_DLA(network.get_layer(i))) for i in range(layers))
    if on_dla < layers and not settings.gpu_fallback:
        raise DenseNetTRTError(f"DLA cannot run {layers - on_dla} of the {layers} layers and gpu_fallback=False; "
                               "allow GPU fallback or build without dla_core")


def check_dla_batch(options: dict[str, Any], batch: BatchRange) -> None:
    """Refuse DLA (option ``dla_core``) with a dynamic batch: "DLA does not support dynamic
    dimensions, so the profile's min, max, and opt values must be equal" (TensorRT's DLA layer
    restrictions); TensorRT would put every layer on the GPU, or fail without GPU fallback."""
    if options.get("dla_core") is not None and batch.min != batch.max:
        raise DenseNetTRTError(f"dla_core={options['dla_core']} needs a fixed batch (DLA runs only optimization "
                               f"profiles with min = opt = max), not {batch}: give one batch size, e.g. batch={batch.opt}")


def _read_cache(config, cache: Path | None) -> bool:
    """Start from the timing cache file where there is one (an unreadable one, e.g. from
    another TensorRT release, is started afresh and overwritten); whether one is attached, to
    be written after the build."""
    if cache is None:
        return False
    data = input_file(cache, "timing cache").read_bytes() if cache.exists() else b""
    timing = config.create_timing_cache(data)
    if timing is None:
        timing = config.create_timing_cache(b"")
    return kept_cache(config.set_timing_cache(timing, ignore_mismatch=False), cache)


def kept_cache(attached: bool, cache: Path) -> bool:
    """``attached``: what ``IBuilderConfig.set_timing_cache`` answered. False where the cache
    was measured on another GPU (a shared ``timing_cache_path`` or engines folder): the build
    goes on without one, says so in one line, and leaves the file as it is."""
    if not attached:
        warnings.warn(f"TensorRT refused the timing cache {cache} (measured on another GPU); building without "
                      "it and leaving it unchanged: give this GPU its own timing_cache_path", stacklevel=2)
    return attached


class PlanRunner:
    """A deserialized plan: float32 (N, C, H, W) in, logits out, on the GPU, through one
    execution context (``PlanContext``); ``contexts`` gives one per CUDA stream for requests in
    flight, where the plan allows it."""

    def __init__(self, trt, plan: bytes, where: str, dla_core: int | None, input_dtype: str, output_dtype: str):
        self.logger = make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        if dla_core is not None:
            check_dla(dla_core, self.runtime.num_DLA_cores)
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise DenseNetTRTError(f"TensorRT {trt.__version__} cannot deserialize {where}: {self.logger.last()}; "
                                   "rebuild the engine")
        found = {self.engine.get_tensor_name(i): (self.engine.get_tensor_mode(self.engine.get_tensor_name(i)).name,
                                                  self.engine.get_tensor_dtype(self.engine.get_tensor_name(i)).name)
                 for i in range(self.engine.num_io_tensors)}
        expected = {INPUT_NAME: ("INPUT", _trt_name(input_dtype)), OUTPUT_NAME: ("OUTPUT", _trt_name(output_dtype))}
        if found != expected:
            raise DenseNetTRTError(f"{where} has bindings {found}, not the manifest's {expected}; rebuild the engine")
        self.input_dtype = TORCH_DTYPES[expected[INPUT_NAME][1]]
        self.output_dtype = TORCH_DTYPES[expected[OUTPUT_NAME][1]]
        self.first = PlanContext(self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(x)

    def contexts(self, n: int) -> list[PlanContext]:
        """``n`` execution contexts, each with its CUDA stream, for ``n`` requests in flight: a
        plan of one fixed shape only (``in_flight_refusal``), all on its one optimization profile."""
        return [self.first] + [PlanContext(self) for _ in range(n - 1)]


def in_flight_refusal(batch: BatchRange) -> str:
    """Why a plan of ``batch`` runs one request at a time ("" where it can run several): with a
    dynamic shape, each execution context in concurrent use needs an optimization profile of its
    own (NvInferRuntime.h, IExecutionContext, 10.3 and 11.1), and these plans have one."""
    if batch.min == batch.max:
        return ""
    return (f"TensorRT plan of batch {batch}: one request in flight (concurrent execution contexts of a dynamic "
            "shape need one optimization profile each, and the plan has one); a fixed batch (batch N) runs several")


class PlanContext:
    """One execution context of a plan and a CUDA stream of its own: not the legacy default
    stream, where TensorRT synchronizes the whole device, and ordered after the caller's current
    stream and before it (``wait_stream`` both ways), so CUDA events and graphs see its work.
    Calls from several threads take turns; its stream keeps their GPU work in order."""

    def __init__(self, runner: PlanRunner):
        self.runner = runner
        self.context = runner.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        runner, context = self.runner, self.context
        with self.lock:
            caller = torch.cuda.current_stream()
            x = x.to("cuda", runner.input_dtype).contiguous()
            if not context.set_input_shape(INPUT_NAME, tuple(x.shape)):
                raise DenseNetTRTError(f"TensorRT refuses input of shape {tuple(x.shape)}: {runner.logger.last()}")
            out = torch.empty(tuple(context.get_tensor_shape(OUTPUT_NAME)), dtype=runner.output_dtype, device="cuda")
            context.set_tensor_address(INPUT_NAME, x.data_ptr())
            context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            self.stream.wait_stream(caller)
            enqueued = context.execute_async_v3(self.stream.cuda_stream)
            caller.wait_stream(self.stream)
        if not enqueued:
            raise DenseNetTRTError(f"TensorRT inference failed: {runner.logger.last()}")
        return out


def _trt_name(dtype_name: str) -> str:
    """The TensorRT DataType member name of the manifest's dtype name (``float16`` -> ``HALF``)."""
    found = [name for name, dtype in TORCH_DTYPES.items() if str(dtype).removeprefix("torch.") == dtype_name]
    if not found:
        raise DenseNetTRTError(f"the manifest's binding dtype {dtype_name} is not one of "
                               f"{', '.join(str(d).removeprefix('torch.') for d in TORCH_DTYPES.values())}; "
                               "rebuild the engine")
    return found[0]
