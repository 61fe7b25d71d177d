"""Conformance of the tool against Torch-TensorRT 2.14.0's Python layer. NOT an engine test.

What runs: the real ``torch_tensorrt`` Python package of the 2.14.0 wheel (its ``.py`` files;
the compiled ``_C`` and ``lib/libtorchtrt*.so`` need libnvinfer and are left out, so its Python
runtime path is the one selected), in a child process (tests/backends/conformance_torch_tensorrt_child.py)
with two documented stand-ins there and nowhere else: a ``tensorrt`` module carrying only the
names Torch-TensorRT's Python layer reads at import and during a dry run, and answers to three
CUDA device queries (capability 9.0, device 0, free memory). In it, for the smallest preset
(densenet_bc40_k12, 32x32, batch 1:2:4) in fp32, fp16, bf16 and int8 (ModelOpt max calibration):

- the graph is the tool's own (``backends.tensorrt.exported_program``, on the CPU);
- every keyword the tool passes to ``dynamo.compile``, to
  ``convert_exported_program_to_serialized_trt_engine`` (with the binding names) and to
  ``torch_tensorrt.save`` (each output format) binds with ``inspect.signature(...).bind`` to a
  named parameter, none into a ``**kwargs`` catch-all (which Torch-TensorRT swallows silently);
- ``torch_tensorrt.Input(**input_shapes(spec))`` is built and keeps the batch range and dtype;
- ``dynamo.compile(program, arg_inputs=inputs, **the tool's kwargs, dryrun=True)`` with
  ``require_full_compilation=True`` runs Torch-TensorRT's real lowering, decompositions,
  constant folding, converter-support check and partitioning, and its dry-run report says
  every operator converts, into one TensorRT graph, with nothing left to PyTorch.

int8: on the GPU, ModelOpt's quantizers trace as ``tensorrt.quantize_op`` (one per enabled
quantizer); on the CPU ModelOpt takes a path torch.export cannot trace. The child routes each
quantizer to the call the CUDA path makes, and gives ModelOpt's quantize_op CPU kernel ModelOpt's
own CPU fake-quantization (Torch-TensorRT's constant folding evaluates it on the weights and
discards the value). The test checks that every quantizer is in the graph as quantize_op and that
Torch-TensorRT converts them all.

What it proves: the tool speaks Torch-TensorRT 2.14.0's Python API (no swallowed or misspelt
keyword, valid Input objects) and hands it graphs whose every operator has a registered
converter, for every precision, with a dynamic batch. What it does not prove: that TensorRT
builds an engine, that the converters' TensorRT calls succeed, the engine's numbers or speed,
or anything about GPUs (those are the ``gpu``/``tensorrt`` tests). If Torch-TensorRT starts to
need another TensorRT name here, the stand-in raises AttributeError and this test fails.

The wheel: ``TORCH_TENSORRT_WHEEL`` (a path to the .whl), else the cache folder
``DENSENET_TRT_CONFORMANCE_CACHE`` (default ``~/.cache/densenet-trt/conformance``), filled
with ``pip download --no-deps torch-tensorrt==2.14.0`` (``helpers.torch_tensorrt_wheel``);
skipped, saying why, when neither works.
Its pure-Python requirements (dllist, psutil) come with the ``test`` extra.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import TORCH_TENSORRT_VERSION, torch_tensorrt_wheel

from densenet_trt.engine.spec import Precision

# In `pytest -m slow` (CI runs it): the child imports Torch-TensorRT and ModelOpt and dry-runs four
# precisions, 24 s on 2 cores, a twelfth of the default suite's 5-minute budget.
pytestmark = [pytest.mark.conformance, pytest.mark.slow]

VERSION = TORCH_TENSORRT_VERSION
CHILD = Path(__file__).with_name("conformance_torch_tensorrt_child.py")
PRECISIONS = ["fp32", "fp16", "bf16", "int8"]
CUDA_QUERIES = {"get_device_capability", "current_device", "mem_get_info"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    wheel = torch_tensorrt_wheel()
    folder = tmp_path_factory.mktemp("torch_tensorrt_wheel")
    with zipfile.ZipFile(wheel) as archive:  # the Python files only: no _C, no libtorchtrt
        archive.extractall(folder, [name for name in archive.namelist() if name.endswith(".py")])
    out = folder / "report.json"
    result = subprocess.run([sys.executable, str(CHILD), str(folder), str(out)],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, (result.stderr or result.stdout)[-4000:]
    data = json.loads(out.read_text())
    data["folder"] = str(folder)
    return data


def test_the_real_torch_tensorrt_ran_and_the_tool_still_sees_no_tensorrt(report):
    assert report["torch_tensorrt"]["version"] == VERSION
    assert Path(report["torch_tensorrt"]["file"]).is_relative_to(report["folder"])
    assert report["tool_sees_tensorrt"] is False  # the stand-in never makes the backend usable
    assert set(report["cuda_queries"]) <= CUDA_QUERIES


def test_the_stand_in_never_reaches_this_process(report):
    stand_in = [m for m in ("tensorrt", "torch_tensorrt") if m in sys.modules
                and "conformance" in str(getattr(sys.modules[m], "__file__", ""))]
    assert stand_in == []


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_keyword_binds_to_a_named_parameter(report, precision):
    checked = report["precisions"][precision]
    assert checked["swallowed"] == []
    assert {"disable_tf32", "require_full_compilation", "hardware_compatible", "version_compatible"} <= set(checked["kwargs"])
    assert {"workspace_size", "optimization_level", "timing_cache_path", "min_block_size"} <= set(checked["every_kwarg"])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_inputs_carry_the_batch_range_and_the_precisions_dtype(report, precision):
    built = report["precisions"][precision]["input"]
    assert built["shape"] == {"min_shape": [1, 3, 32, 32], "opt_shape": [2, 3, 32, 32], "max_shape": [4, 3, 32, 32]}
    assert built["dtype"] == str(Precision(precision).dtype)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_dry_run_converts_every_operator_into_one_tensorrt_graph(report, precision):
    checked = report["precisions"][precision]
    assert checked["total_ops"] > 60  # the cut model: 75 operators at fp32
    assert checked["supported_ops"] == checked["total_ops"], checked["unsupported"]
    assert checked["unsupported"] == {} and checked["run_in_torch"] == [] and checked["torch_nodes"] == []
    assert checked["engines"] == 1
    assert "aten.convolution.default" in checked["engine_ops"] and "aten.cat.default" in checked["engine_ops"]


def test_int8_quantizers_reach_tensorrt_as_quantize_ops(report):
    checked = report["precisions"]["int8"]
    assert checked["quantizers"] > 0
    assert checked["quantize_ops"] == checked["quantizers"]
    assert "tensorrt.quantize_op.default" in checked["engine_ops"]
    assert report["precisions"]["fp32"]["quantize_ops"] == 0
