"""Triton model repositories, checked with Triton's own model-configuration protobuf."""

import dataclasses
import shutil

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from densenet_trt import DenseNetTRTError
from densenet_trt.backends import BACKENDS
from densenet_trt.cli import main
from densenet_trt.engine.manifest import read_manifest
from densenet_trt.deploy.triton import export_triton, pbtxt_string, triton_target
from helpers import small_engine_param

# Per backend Triton runs: platform, backend, files, input and output names.
TARGETS = {
    "onnxruntime": ("onnxruntime_onnx", "", ["model.onnx"], "input", "logits"),
    "openvino": ("", "openvino", ["model.bin", "model.xml"], "input", "logits"),
    "torchscript": ("pytorch_libtorch", "", ["model.pt"], "input__0", "logits__0"),
}
# The graph's I/O type: the precision's for graphs cast to it; float32 around int8 Q/DQ and
# for OpenVINO, whose precision is a compile-time hint.
IO_TYPE = {"fp32": mc.TYPE_FP32, "fp16": mc.TYPE_FP16, "bf16": mc.TYPE_BF16, "int8": mc.TYPE_FP32}
# Every precision every CPU backend Triton runs can build on this machine.
CASES = [(b, p.value) for b in TARGETS if BACKENDS[b].available().ok for p in BACKENDS[b].precisions("cpu")]
# Triton's openvino backend pins no precision but bf16 (HINT_BF16): its fp32 and int8 engines are refused.
REFUSED = [(b, p) for b, p in CASES if b == "openvino" and p != "bf16"]


def built(request, small_engine, backend, precision):
    if precision != "int8":
        return small_engine(backend, precision)  # shared with tests/engine/test_build.py
    # Built without the accuracy gate, which export-triton does not read.
    return request.getfixturevalue("small_int8_engine")(backend)


@pytest.fixture(scope="module", params=[small_engine_param(b, p) for b, p in CASES if (b, p) not in REFUSED])
def engine(request, small_engine):
    return built(request, small_engine, *request.param)


@pytest.fixture(scope="module", params=[small_engine_param(b, p) for b, p in REFUSED])
def refused_engine(request, small_engine):
    return built(request, small_engine, *request.param)


def parse(folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def batched(manifest, max_batch_size):
    """The config's max_batch_size and batch dimension: Triton's openvino backend fixes the IR's
    batch to a max_batch_size N and refuses every other, so its configs have 0 and -1."""
    return (0, [-1]) if manifest.backend == "openvino" else (max_batch_size, [])


def parameters(config):
    return {key: value.string_value for key, value in config.parameters.items()}


def test_repository_layout_and_config_match_the_manifest(engine, tmp_path):
    m = engine.manifest
    platform, backend, files, in_name, out_name = TARGETS[m.backend]
    dtype = mc.TYPE_FP32 if m.backend == "openvino" else IO_TYPE[m.precision]
    folder = export_triton(engine.path, tmp_path / "repo", model_name="densenet", instances=2)
    assert folder == tmp_path / "repo" / "densenet"
    assert sorted(p.name for p in (folder / "1").iterdir()) == files
    config = parse(folder)
    assert (config.name, config.platform, config.backend) == ("densenet", platform, backend)
    max_batch_size, batch = batched(m, m.batch.max)
    assert config.max_batch_size == max_batch_size
    (inp,), (out,) = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (in_name, dtype, batch + [3, 32, 32])
    assert (out.name, out.data_type, list(out.dims)) == (out_name, dtype, batch + [m.model.num_classes])
    # Triton's dynamic batcher combines requests along the batch max_batch_size declares.
    assert config.HasField("dynamic_batching") == (max_batch_size > 0)
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_CPU)
    # The precision the runner runs at: the openvino backend's HINT_BF16 for a bf16 engine.
    expected = {"openvino": {"RESHAPE_IO_LAYERS": "YES", "HINT_BF16": "YES", "PERFORMANCE_HINT": "LATENCY"}}
    assert parameters(config) == expected.get(m.backend, {})


def test_the_engines_thread_count_is_carried_over(engine, edit_manifest, tmp_path):
    copy = shutil.copytree(engine.path, tmp_path / "e")
    edit_manifest(copy, lambda m: m.update(threads=3))
    config = parse(export_triton(copy, tmp_path / "repo"))
    key = {"onnxruntime": "intra_op_thread_count", "openvino": "INFERENCE_NUM_THREADS"}.get(engine.manifest.backend)
    if key is None:
        assert parameters(config) == {}  # Triton's PyTorch runner takes no thread count per model
    else:
        assert parameters(config)[key] == "3"
        assert "inter_op_thread_count" not in parameters(config)  # sequential, as the engine's session


def test_engines_the_runner_cannot_run_at_their_precision_are_refused(refused_engine, tmp_path):
    with pytest.raises(DenseNetTRTError, match=(
            f"Triton's openvino backend cannot run this {refused_engine.manifest.precision} engine at its "
            "precision: its only precision parameter is HINT_BF16, .* export an onnxruntime engine, or a bf16 "
            "openvino engine$")):
        export_triton(refused_engine.path, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_the_export_says_what_triton_runs(engine, tmp_path):
    """The CLI's line: the runner, the precision it runs the engine in, the parameters."""
    result = CliRunner().invoke(main, ["export-triton", str(engine.path), "--repository", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    m = engine.manifest
    runner = TARGETS[m.backend][0] or TARGETS[m.backend][1]
    said = f"wrote {tmp_path / 'repo' / engine.path.name} (config.pbtxt, 1/): Triton's {runner} runs it in {m.precision}"
    if m.backend == "openvino":
        said += ("; parameters RESHAPE_IO_LAYERS=YES, HINT_BF16=YES, PERFORMANCE_HINT=LATENCY; max_batch_size 0, the "
                 "batch a -1 dimension (this runner takes only batch max_batch_size otherwise), so Triton does not "
                 "batch requests: send batches of 1 to 8")
    assert result.output == said + "\n"


def test_options_and_refusals(engine, tmp_path):
    repo = tmp_path / "repo"
    folder = export_triton(engine.path, repo, max_batch_size=4, dynamic_batching=False)
    config = parse(folder)
    assert folder.name == engine.path.name and config.max_batch_size == batched(engine.manifest, 4)[0]
    assert not config.HasField("dynamic_batching")
    with pytest.raises(DenseNetTRTError, match="exists; pass force=True"):
        export_triton(engine.path, repo)
    assert parse(export_triton(engine.path, repo, max_batch_size=2, force=True)).max_batch_size == batched(
        engine.manifest, 2)[0]
    with pytest.raises(DenseNetTRTError, match="max batch size 9 is outside this engine's batch range 1:4:8"):
        export_triton(engine.path, repo, model_name="other", max_batch_size=9)
    assert sorted(p.name for p in repo.iterdir()) == [engine.path.name]


def test_formats_triton_cannot_run_are_refused_naming_those_it_can(engine):
    _, manifest = read_manifest(engine.path)
    inductor = dataclasses.replace(manifest, backend="inductor", format="aot-inductor")
    with pytest.raises(DenseNetTRTError) as refused:
        triton_target(inductor)
    assert str(refused.value) == (
        "Triton cannot serve the aot-inductor format of backend inductor; Triton serves TensorRT plans (backend "
        "tensorrt or tensorrt-onnx, format engine), TorchScript (backend tensorrt or torchscript, format "
        "torchscript), ONNX (backend onnxruntime, format onnx) and OpenVINO IR (backend openvino, format "
        "openvino-ir): build one of those, e.g. backend=onnxruntime on a CPU or backend=tensorrt format=engine "
        "on an NVIDIA GPU")
    gpu_device = dataclasses.replace(manifest.device, type="cuda")
    gpu = triton_target(dataclasses.replace(manifest, backend="tensorrt", format="engine", device=gpu_device))
    assert gpu.setting == ("platform", "tensorrt_plan") and gpu.files == {"model.engine": "model.plan"}


def test_engines_without_batch_1_or_manifest_are_refused(engine_copy, edit_manifest, tmp_path):
    artifact = engine_copy
    edit_manifest(artifact.path, lambda m: m["batch"].update(min=2))  # batch 2:2:4
    with pytest.raises(DenseNetTRTError, match="takes batches from 2"):
        export_triton(artifact.path, tmp_path / "repo")
    (artifact.path / "manifest.json").unlink()
    with pytest.raises(DenseNetTRTError, match="has no manifest.json"):
        export_triton(artifact.path, tmp_path / "repo")


@pytest.fixture(scope="module")
def onnx_engine(shared_engine):
    return shared_engine.path


@pytest.mark.parametrize("name", [
    'x" platform: "evil', "x\\", "", ".", "..", ".hidden", "a/b", "/abs", "a\nb", "tab\t", "nul\0", "-x",
    "a b", "caf\u00e9", "x" * 201,
])
def test_names_triton_cannot_serve_are_refused_and_nothing_is_written(onnx_engine, tmp_path, name):
    with pytest.raises(DenseNetTRTError, match="is not a Triton model name: use letters, digits") as error:
        export_triton(onnx_engine, tmp_path / "repo", model_name=name)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("name", ["densenet-121_v2.0", "_x", "9", "a..b", "x" * 200])
def test_a_name_with_allowed_punctuation_parses_and_round_trips(onnx_engine, tmp_path, name):
    folder = export_triton(onnx_engine, tmp_path / "repo", model_name=name)
    assert folder == tmp_path / "repo" / name
    config = parse(folder)
    assert config.name == name and config.platform == "onnxruntime_onnx"
    assert text_format.Parse(text_format.MessageToString(config), mc.ModelConfig()) == config


@pytest.mark.parametrize("text", [
    "plain", 'a"b', "back\\slash", '"; platform: "evil', "\\\"", "new\nline", "tab\tcr\r", "\x01\x1f\x7f",
    "caf\u00e9 \u4e16", "",
])
def test_pbtxt_strings_round_trip_through_tritons_parser(text):
    config = text_format.Parse(f"name: {pbtxt_string(text)} platform: {pbtxt_string('p')}", mc.ModelConfig())
    assert (config.name, config.platform) == (text, "p")
