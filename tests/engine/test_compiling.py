"""densenet_trt.compile: an nn.Module in, a loaded engine out (Torch-TensorRT's style), and
Engine.warmup."""

import pytest
import torch

import densenet_trt
from densenet_trt import DenseNetTRTError, create_model
from densenet_trt.engine.load import Engine


def test_a_torchvision_densenet_compiles_into_a_loaded_engine(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.densenet121(num_classes=7).eval()
    lines = []
    engine = densenet_trt.compile(model, precision="fp32", backend="torchscript", batch="1:2:2", image_size=32,
                                  output=tmp_path, progress=lines.append)
    assert isinstance(engine, Engine) and engine.manifest.model.name == "densenet121" and engine.backend == "torchscript"
    assert engine.manifest.model.num_classes == 7 and engine.batch.max == 2
    (checkpoint,) = tmp_path.glob("densenet121-*.pt")
    assert lines[0] == f"DenseNet is preset densenet121; its weights are in {checkpoint}"
    assert engine.manifest.model.weights.file == str(checkpoint.resolve())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(engine(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_a_preset_module_compiles_and_warms_up(tmp_path):
    model = create_model("densenet_bc40_k12")
    engine = densenet_trt.compile(model, backend="onnxruntime", batch="1:3:4", output=tmp_path)
    assert engine.manifest.model.name == "densenet_bc40_k12" and engine.manifest.accuracy.passed
    # The same weights again: the checkpoint is reused, not written twice.
    (checkpoint,) = tmp_path.glob("densenet_bc40_k12-*.pt")
    densenet_trt.compile(model, backend="onnxruntime", output=tmp_path, name="again", verify=False)
    assert list(tmp_path.glob("densenet_bc40_k12-*.pt")) == [checkpoint]
    calls, run = [], engine.run
    engine.run = lambda x: calls.append(tuple(x.shape)) or run(x)
    assert engine.warmup(iterations=2) is engine and calls == [(3, 3, 32, 32)] * 2
    engine.warmup(iterations=1, batch_size=4)
    assert calls[-1] == (4, 3, 32, 32)
    with pytest.raises(DenseNetTRTError, match="iterations must be a positive integer, got 0"):
        engine.warmup(iterations=0)
    with pytest.raises(DenseNetTRTError, match="batch_size 5 is outside this engine's batch range 1:3:4"):
        engine.warmup(batch_size=5)


def test_what_is_no_preset_is_refused_and_a_refused_build_leaves_no_checkpoint(tmp_path):
    with pytest.raises(DenseNetTRTError, match="model must be a torch.nn.Module"):
        densenet_trt.compile("densenet121", output=tmp_path)
    with pytest.raises(DenseNetTRTError, match="Linear is not a DenseNet"):
        densenet_trt.compile(torch.nn.Linear(2, 2), output=tmp_path)
    with pytest.raises(DenseNetTRTError, match=r"has the architecture of no preset \(densenet121, "):
        densenet_trt.compile(create_model("densenet_bc40_k12", block_config=(2, 2, 2)), output=tmp_path)
    with pytest.raises(DenseNetTRTError, match="int8 needs a calibration"):
        densenet_trt.compile(create_model("densenet_bc40_k12"), precision="int8", output=tmp_path)
    assert list(tmp_path.iterdir()) == []
