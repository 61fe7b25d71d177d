"""The calls into TensorRT's Python API for backend ``tensorrt-onnx``: build a plan from ONNX
bytes, and run one with torch CUDA tensors. ``trt`` is the imported ``tensorrt`` module, handed
in by the backend (which decides everything else: ``tensorrt_onnx.recipe``). Written against
the Python bindings of TensorRT 10.x and 11.1 (python/src/infer/pyCore.cpp, pyGraph.cpp,
parsers/pyOnnx.cpp); not run here (no GPU was lent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..artifact import atomic_path
from ..capture import INPUT_NAME, OUTPUT_NAME
from ..errors import DenseNetTRTError
from ..reading import input_file
from ..spec import BatchRange, BuildSpec

# TensorRT DataType member names -> torch dtypes, for the bindings this backend builds.
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16}


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
    Logger prints them and keeps nothing)."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if severity <= trt.ILogger.ERROR:
                self.errors.append(" ".join(str(msg).split()))

        def last(self) -> str:
            return self.errors[-1] if self.errors else "TensorRT gave no reason"

    return Logger()


def build_plan(trt, onnx_bytes: bytes, spec: BuildSpec, settings, recipe, cache: Path | None) -> tuple[bytes, dict]:
    """The serialized plan of the ONNX model ``onnx_bytes`` built as ``recipe`` says, and where
    its layers run (``layers_on_dla``, ``layers_on_gpu``); reads and writes the timing cache
    file ``cache`` (None: no cache kept)."""
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
    placement = _dla(trt, builder, network, config, settings, spec)
    _read_cache(config, cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DenseNetTRTError(f"TensorRT {trt.__version__} could not build the plan: {logger.last()}")
    if cache is not None:
        with atomic_path(cache, force=True) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), placement


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


def _dla(trt, builder, network, config, settings, spec: BuildSpec) -> dict[str, int]:
    """DLA core ``settings.dla_core`` as the default device (checked against this board); the
    count of layers it takes and of those left to the GPU (all of them without DLA)."""
    layers = network.num_layers
    if settings.dla_core is None:
        return {"layers_on_dla": 0, "layers_on_gpu": layers}
    check_dla(settings.dla_core, builder.num_DLA_cores)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = settings.dla_core
    on_dla = sum(bool(config.can_run_on_DLA(network.get_layer(i))) for i in range(layers))
    if on_dla < layers and not settings.gpu_fallback:
        raise DenseNetTRTError(f"DLA cannot run {layers - on_dla} of the {layers} layers and gpu_fallback=False; "
                               "allow GPU fallback or build without dla_core")
    return {"layers_on_dla": on_dla, "layers_on_gpu": layers - on_dla}


def _read_cache(config, cache: Path | None) -> None:
    """Start from the timing cache file where there is one (an unreadable one, e.g. from
    another TensorRT release, is started afresh and overwritten)."""
    if cache is None:
        return
    data = input_file(cache, "timing cache").read_bytes() if cache.exists() else b""
    timing = config.create_timing_cache(data)
    if timing is None:
        timing = config.create_timing_cache(b"")
    config.set_timing_cache(timing, ignore_mismatch=False)


class PlanRunner:
    """A deserialized plan and one execution context: float32 (N, C, H, W) in, logits out, on
    the GPU, each call on torch's current CUDA stream (so CUDA events and graphs see it)."""

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
        self.context = self.engine.create_execution_context()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to("cuda", self.input_dtype).contiguous()
        if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise DenseNetTRTError(f"TensorRT refuses input of shape {tuple(x.shape)}: {self.logger.last()}")
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=self.output_dtype, device="cuda")
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise DenseNetTRTError(f"TensorRT inference failed: {self.logger.last()}")
        return out


def _trt_name(dtype_name: str) -> str:
    """The TensorRT DataType member name of the manifest's dtype name (``float16`` -> ``HALF``)."""
    found = [name for name, dtype in TORCH_DTYPES.items() if str(dtype).removeprefix("torch.") == dtype_name]
    if not found:
        raise DenseNetTRTError(f"the manifest's binding dtype {dtype_name} is not float32 or float16; rebuild the engine")
    return found[0]
