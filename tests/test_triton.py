"""Triton model repositories, checked with Triton's own model-configuration protobuf."""

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from densenet_trt import DenseNetTRTError
from densenet_trt.build import build
from densenet_trt.triton import export_triton, triton_target

SMALL = {"block_config": (2, 2, 2)}
CASES = {
    "onnxruntime": ("fp32", "onnxruntime_onnx", "", ["model.onnx"], "input", "logits", mc.TYPE_FP32),
    "openvino": ("bf16", "", "openvino", ["model.bin", "model.xml"], "input", "logits", mc.TYPE_FP32),
    "torchscript": ("bf16", "pytorch_libtorch", "", ["model.pt"], "input__0", "logits__0", mc.TYPE_BF16),
}


@pytest.fixture(scope="module", params=list(CASES))
def engine(request, tmp_path_factory):
    precision = CASES[request.param][0]
    return build("densenet_bc100_k12", backend=request.param, precision=precision, batch="1:4:8",
                 output=tmp_path_factory.mktemp("engines"), overrides=SMALL)


def parse(folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def test_repository_layout_and_config_match_the_manifest(engine, tmp_path):
    m = engine.manifest
    _, platform, backend, files, in_name, out_name, dtype = CASES[m["backend"]]
    folder = export_triton(engine.path, tmp_path / "repo", model_name="densenet", instances=2)
    assert folder == tmp_path / "repo" / "densenet"
    assert sorted(p.name for p in (folder / "1").iterdir()) == files
    config = parse(folder)
    assert (config.name, config.platform, config.backend) == ("densenet", platform, backend)
    assert config.max_batch_size == m["batch"]["max"]
    (inp,), (out,) = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (in_name, dtype, [3, 32, 32])
    assert (out.name, out.data_type, list(out.dims)) == (out_name, dtype, [m["model"]["num_classes"]])
    assert config.HasField("dynamic_batching")
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_CPU)


def test_options_and_refusals(engine, tmp_path):
    repo = tmp_path / "repo"
    folder = export_triton(engine.path, repo, max_batch_size=4, dynamic_batching=False)
    config = parse(folder)
    assert folder.name == engine.path.name and config.max_batch_size == 4
    assert not config.HasField("dynamic_batching")
    with pytest.raises(DenseNetTRTError, match="exists; pass --force"):
        export_triton(engine.path, repo)
    assert parse(export_triton(engine.path, repo, max_batch_size=2, force=True)).max_batch_size == 2
    with pytest.raises(DenseNetTRTError, match=r"max batch size 9 is outside the engine's range 1\.\.8"):
        export_triton(engine.path, repo, model_name="other", max_batch_size=9)
    assert sorted(p.name for p in repo.iterdir()) == [engine.path.name]


def test_formats_triton_cannot_run_are_refused_naming_those_it_can():
    manifest = {"backend": "inductor", "format": "aot-inductor", "device": {"type": "cpu"}}
    with pytest.raises(DenseNetTRTError, match="Triton has no runner for a inductor aot-inductor engine; it takes tensorrt engine"):
        triton_target(manifest)
    gpu = triton_target({"backend": "tensorrt", "format": "engine", "device": {"type": "cuda"}})
    assert gpu.setting == 'platform: "tensorrt_plan"' and gpu.files == {"model.engine": "model.plan"}


def test_engines_without_batch_1_or_manifest_are_refused(tmp_path):
    artifact = build("densenet_bc100_k12", backend="onnxruntime", batch="2:2:4", output=tmp_path, overrides=SMALL)
    with pytest.raises(DenseNetTRTError, match="takes batches from 2"):
        export_triton(artifact.path, tmp_path / "repo")
    (artifact.path / "manifest.json").unlink()
    with pytest.raises(DenseNetTRTError, match="has no manifest.json"):
        export_triton(artifact.path, tmp_path / "repo")
