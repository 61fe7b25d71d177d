"""The child process of tests/backends/test_conformance_torch_tensorrt.py (read that docstring first).

Run as ``python conformance_torch_tensorrt_child.py WHEEL_DIR OUT_JSON``: WHEEL_DIR holds the
Python files of the torch-tensorrt 2.14.0 wheel (``torch_tensorrt/``, no compiled parts). It
puts the two stand-ins below in place, imports the real ``torch_tensorrt`` from WHEEL_DIR,
binds and runs what the tool hands to Torch-TensorRT, and writes what it saw to OUT_JSON.

STAND-IN 1, ``tensorrt``: TensorRT's Python API is one compiled module (``tensorrt.tensorrt``,
linked to libnvinfer), which cannot be installed on a machine without NVIDIA's libraries. The
module object registered below as ``sys.modules["tensorrt"]``, in this process only, carries
just the names Torch-TensorRT 2.14.0's Python layer touches while it is imported and while
``dynamo.compile(..., dryrun=True)`` runs: base classes it subclasses or names in annotations,
enum members it reads into tables, and ``Logger``/``init_libnvinfer_plugins`` it calls once at
import. None of them does anything; any other name raises AttributeError, so a Torch-TensorRT
that starts to need more of TensorRT here fails this test instead of passing it. A dry run
builds no network and calls no builder: nothing of TensorRT itself is exercised.

STAND-IN 2, three CUDA queries (there is no NVIDIA driver here): ``get_device_capability``
(Torch-TensorRT asks whether it runs on Thor or a Tegra board, at import), ``current_device``
(its default ``Device``) and ``mem_get_info`` (a free-memory warning before partitioning). They
answer as device 0, a desktop GPU of compute capability 9.0 with 140 of 141 GiB free; the calls
are recorded. No tensor is ever on CUDA: any real CUDA use fails as it would without them.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import types
from pathlib import Path

import torch

STAND_IN_CLASSES = (
    "IAttention", "IBuilderConfig", "ICudaEngine", "ILayer", "ILogger", "INetworkDefinition",
    "IOutputAllocator", "IPluginV3", "IProgressMonitor", "ITensor", "Logger", "PluginFieldCollection",
    "Weights", "ActivationType", "DeviceType", "ElementWiseOperation", "EngineCapability",
    "TopKOperation", "UnaryOperation",
)
STAND_IN_MEMBERS = {
    "DataType": ("FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "FP8", "FP4"),
    "InterpolationMode": ("NEAREST", "LINEAR", "CUBIC"),
    "MatrixOperation": ("NONE",),
    "SampleMode": ("CLAMP", "FILL", "REFLECT"),
    "SerializationFlag": ("INCLUDE_REFIT",),
}
# TensorRT's own aliases of DataType members.
STAND_IN_ALIASES = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16", "int8": "INT8",
                    "int32": "INT32", "int64": "INT64", "bool": "BOOL"}
CUDA_ANSWERS = {"get_device_capability": (9, 0), "current_device": 0, "mem_get_info": (140 << 30, 141 << 30)}
# Every setting the tool has, for binding (the dry runs use the defaults and full compilation).
ALL_OPTIONS = {"workspace_size": 1 << 30, "optimization_level": 3, "timing_cache_path": "timing.cache",
               "min_block_size": 1, "require_full_compilation": True, "allow_tf32": True,
               "hardware_compatible": True, "version_compatible": True}
PRESET = "densenet_bc40_k12"  # the smallest preset, cut to blocks of two layers: every operator, fewer of each
SMALL = {"block_config": (2, 2, 2)}
BATCH = "1:2:4"


class _Member:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<stand-in tensorrt.{self.name}>"


def tensorrt_stand_in(version: str) -> types.ModuleType:
    """STAND-IN 1 (module docstring): not TensorRT; the names Torch-TensorRT's Python layer reads."""
    module = types.ModuleType("tensorrt", "A stand-in for TensorRT's compiled binding; see conformance_torch_tensorrt_child.py")
    module.__version__ = version
    module.__path__ = []  # a package, as the real one is
    module.__file__ = __file__  # where it is defined: here
    for name in STAND_IN_CLASSES:
        setattr(module, name, type(name, (), {"__module__": "tensorrt"}))
    for name, members in STAND_IN_MEMBERS.items():
        setattr(module, name, type(name, (), {m: _Member(f"{name}.{m}") for m in members}))
    module.ILogger.Severity = type("Severity", (), {})
    for alias, member in STAND_IN_ALIASES.items():
        setattr(module, alias, getattr(module.DataType, member))
    module.init_libnvinfer_plugins = lambda logger, namespace: True
    module.tensorrt = module  # the real package re-exports its binding tensorrt.tensorrt
    return module


def answer_cuda_queries() -> list[str]:
    """STAND-IN 2 (module docstring); returns the list the calls are recorded in."""
    calls: list[str] = []

    def answer(name):
        def query(*args, **kwargs):
            calls.append(name)
            return CUDA_ANSWERS[name]
        return query

    for name in CUDA_ANSWERS:
        setattr(torch.cuda, name, answer(name))
    return calls


def route_quantizers_as_on_cuda(model: torch.nn.Module) -> int:
    """ModelOpt's fake-quantizer picks its op by the tensor's device: on CUDA it calls
    ``torch.ops.tensorrt.quantize_op`` (ModelOpt's own op, with a CPU kernel and a fake one),
    which is what the tool's int8 graph carries on the GPU; on the CPU it takes a decomposition
    that torch.export cannot trace (``if amax.min() < 0``). This routes every enabled quantizer
    to the CUDA branch's call, with its arguments, through ModelOpt's backend registry.

    Torch-TensorRT's constant folding evaluates quantize_op on the (constant) weights before it
    keeps the node (``is_impure``) and drops the value. ModelOpt's CPU kernel of quantize_op
    calls its CUDA extension, absent here; so it is given ModelOpt's own CPU fake-quantization
    (``_tensor_quant``, the fallback ModelOpt itself takes when that extension is missing)."""
    from modelopt.torch.quantization import tensor_quant
    from modelopt.torch.quantization.nn import TensorQuantizer
    from modelopt.torch.quantization.nn.modules.tensor_quantizer import register_quant_backend

    def as_on_cuda(inputs, quantizer):
        return torch.ops.tensorrt.quantize_op(inputs, quantizer._get_amax(inputs), quantizer._num_bits, 0,
                                              quantizer._unsigned, quantizer._narrow_range)

    def on_the_cpu(inputs, amax, num_bits=8, unsigned=False, narrow_range=True):
        return tensor_quant._tensor_quant(inputs, amax, num_bits, unsigned, narrow_range)

    tensor_quant.fake_quant_impl = on_the_cpu
    register_quant_backend("conformance_as_on_cuda", as_on_cuda)
    routed = [q for q in model.modules() if isinstance(q, TensorQuantizer) and q.is_enabled]
    for quantizer in routed:
        quantizer.backend = "conformance_as_on_cuda"
    return len(routed)


def programs() -> dict[str, tuple]:
    """Per precision the tool's BuildSpec and the graph it hands to Torch-TensorRT (on the CPU)."""
    from densenet_trt import BatchRange, create_model
    from densenet_trt.backends.tensorrt import TensorRTSettings, exported_program
    from densenet_trt.int8.quantize import quantize_model
    from densenet_trt.engine.spec import BuildSpec, Precision

    found = {}
    for precision in (Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8):
        spec = BuildSpec(precision=precision, batch=BatchRange.parse(BATCH), image_size=32,
                         options={"require_full_compilation": True})
        TensorRTSettings.from_options(spec.options)
        model = create_model(PRESET, **SMALL)
        quantizers = 0
        if precision is Precision.INT8:
            generator = torch.Generator().manual_seed(0)
            model = quantize_model(model, "max", [], lambda: (torch.randn(4, 3, 32, 32, generator=generator) for _ in range(2)))
            quantizers = route_quantizers_as_on_cuda(model)
        found[precision.value] = (spec, exported_program(model, spec, "cpu"), quantizers)
    return found


def bound_keywords(function, *args, **kwargs) -> list[str]:
    """``inspect.signature(function).bind(...)``; the keywords that landed in a ``**kwargs``
    catch-all (Torch-TensorRT swallows those silently) are returned, to be asserted empty."""
    bound = inspect.signature(function).bind(*args, **kwargs)
    var_keyword = [p.name for p in inspect.signature(function).parameters.values() if p.kind is p.VAR_KEYWORD]
    return sorted(key for name in var_keyword for key in bound.arguments.get(name, {}))


def tensorrt_version(wheel_dir: Path) -> str:
    """The TensorRT release the wheel was built against (``__tensorrt_version__``), read, not imported."""
    source = (wheel_dir / "torch_tensorrt" / "_version.py").read_text()
    return next(ast.literal_eval(line.split("=", 1)[1].strip()) for line in source.splitlines()
                if line.startswith("__tensorrt_version__"))


def observe_dry_runs(torch_tensorrt) -> list:
    """The DryRunTracker each ``compile(..., dryrun=True)`` reports, passed on unchanged."""
    compiler = sys.modules["torch_tensorrt.dynamo._compiler"]
    display, trackers = compiler.dryrun_stats_display, []

    def observed(tracker, dryrun):
        trackers.append(tracker)
        return display(tracker, dryrun)

    compiler.dryrun_stats_display = observed
    return trackers


def check_precision(torch_tensorrt, spec, program, trackers) -> dict:
    """Bind the tool's keywords on the real signatures, build the real Input and dry-run compile."""
    from densenet_trt.backends.tensorrt import BINDING_NAMES, SAVE_FORMATS, TensorRTSettings, compile_kwargs, input_shapes
    from densenet_trt.engine.capture import batch_dynamic_shapes, example_input

    kwargs = compile_kwargs(spec, TensorRTSettings.from_options(spec.options))
    inputs = [torch_tensorrt.Input(**input_shapes(spec))]
    dynamo = torch_tensorrt.dynamo
    swallowed = bound_keywords(dynamo.compile, program, arg_inputs=inputs, **kwargs)
    swallowed += bound_keywords(dynamo.convert_exported_program_to_serialized_trt_engine, program,
                                arg_inputs=inputs, **BINDING_NAMES, **kwargs)
    every = compile_kwargs(spec, TensorRTSettings.from_options(ALL_OPTIONS))
    swallowed += bound_keywords(dynamo.compile, program, arg_inputs=inputs, **every)
    swallowed += bound_keywords(dynamo.convert_exported_program_to_serialized_trt_engine, program,
                                arg_inputs=inputs, **BINDING_NAMES, **every)
    example = example_input(2, spec.image_size, dtype=spec.precision.dtype)
    for output_format in SAVE_FORMATS.values():
        swallowed += bound_keywords(torch_tensorrt.save, program, "model", output_format=output_format,
                                    arg_inputs=[example], dynamic_shapes=batch_dynamic_shapes(spec.batch))
    compiled = dynamo.compile(program, arg_inputs=inputs, **kwargs, dryrun=True)
    tracker = trackers.pop()
    engines = [module for name, module in compiled.named_children() if "_run_on_acc" in name]
    return {
        "kwargs": sorted(kwargs), "every_kwarg": sorted(every), "swallowed": swallowed,
        "input": {"shape": inputs[0].shape, "dtype": str(inputs[0].dtype.to(torch.dtype))},
        "total_ops": tracker.total_ops_in_graph, "supported_ops": tracker.supported_ops_in_graph,
        "unsupported": {str(k): v for k, v in tracker.unsupported_ops.items()},
        "run_in_torch": list(tracker.to_run_in_torch), "engines": tracker.tensorrt_graph_count,
        "engine_ops": sorted({str(n.target) for e in engines for n in e.graph.nodes if n.op == "call_function"}),
        "quantize_ops": sum(str(n.target) == "tensorrt.quantize_op.default" for e in engines for n in e.graph.nodes),
        "torch_nodes": [n.op for n in compiled.graph.nodes if n.op not in ("placeholder", "output", "call_module")],
    }


def main(wheel_dir: Path, out: Path) -> None:
    from densenet_trt.backends.tensorrt import TensorRTBackend

    graphs = programs()
    sys.modules["tensorrt"] = tensorrt_stand_in(tensorrt_version(wheel_dir))
    cuda_calls = answer_cuda_queries()
    sys.path.insert(0, str(wheel_dir))
    import torch_tensorrt

    trackers = observe_dry_runs(torch_tensorrt)
    report = {
        "torch_tensorrt": {"version": torch_tensorrt.__version__, "file": torch_tensorrt.__file__},
        "tool_sees_tensorrt": TensorRTBackend().available().ok,
        "precisions": {},
    }
    for name, (spec, program, quantizers) in graphs.items():
        report["precisions"][name] = {**check_precision(torch_tensorrt, spec, program, trackers), "quantizers": quantizers}
    report["cuda_queries"] = sorted(set(cuda_calls))
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
