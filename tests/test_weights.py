import re
import warnings

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from densenet_trt import DenseNetTRTError, create_model
from densenet_trt.weights import read_state_dict


@pytest.fixture(scope="module")
def torchvision_121():
    return torchvision.models.densenet121().eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, torchvision_121):
    path = tmp_path_factory.mktemp("ckpt") / "densenet121.pth"
    torch.save(torchvision_121.state_dict(), path)
    return path


def _same_outputs(model, reference):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return (model(x) - reference(x)).abs().max().item() <= 1e-5


def test_loads_a_torchvision_state_dict(checkpoint, torchvision_121):
    model = create_model("densenet121", weights=checkpoint)
    assert _same_outputs(model, torchvision_121)


def test_loads_the_legacy_keys_of_the_original_releases(tmp_path, torchvision_121):
    # The first torchvision checkpoints named `norm1.weight` as `norm.1.weight`.
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in torchvision_121.state_dict().items()
        if not k.endswith("num_batches_tracked")  # those releases predate it
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = tmp_path / "legacy.pth"
    torch.save(legacy, path)
    assert _same_outputs(create_model("densenet121", weights=path), torchvision_121)


def test_loads_safetensors_and_wrapped_or_parallel_checkpoints(tmp_path, torchvision_121):
    state = torchvision_121.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "m.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pt")
    for name in ("m.safetensors", "w.pt"):
        assert _same_outputs(create_model("densenet121", weights=tmp_path / name), torchvision_121)


def test_num_classes_defaults_to_the_checkpoints(tmp_path):
    small = create_model("densenet_bc100_k12", num_classes=7, block_config=(2, 2, 2))
    torch.save(small.state_dict(), tmp_path / "c.pth")
    model = create_model("densenet_bc100_k12", weights=tmp_path / "c.pth", block_config=(2, 2, 2))
    assert model.classifier.out_features == 7


def test_other_num_classes_reinitialises_only_the_classifier(checkpoint, torchvision_121):
    with pytest.warns(UserWarning, match="1000 classes, the model 10: the classifier is re-initialised"):
        model = create_model("densenet121", weights=checkpoint, num_classes=10)
    assert model.classifier.out_features == 10
    reference = torchvision_121.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(value, reference[key]), key


def test_checkpoint_of_another_model_is_an_error_naming_keys_and_shapes(checkpoint):
    with pytest.raises(DenseNetTRTError, match=r"does not fit this model: missing features\.denseblock3\.denselayer25"):
        create_model("densenet169", weights=checkpoint)
    with pytest.raises(DenseNetTRTError, match=r"shape mismatch features\.conv0\.weight \(64, 3, 7, 7\) vs model \(96, 3, 7, 7\)"):
        create_model("densenet161", weights=checkpoint)


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(DenseNetTRTError, match="is not a PyTorch checkpoint"):
        read_state_dict(text)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DenseNetTRTError, match="holds no state_dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(DenseNetTRTError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "bad.safetensors")
    with pytest.raises(DenseNetTRTError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")


def test_truncated_checkpoint(tmp_path, checkpoint):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(checkpoint.read_bytes()[:100_000])
    with pytest.raises(DenseNetTRTError, match="is not a PyTorch checkpoint"):
        read_state_dict(cut)


def test_pickled_code_is_not_run(tmp_path):
    torch.save({"w": torch.zeros(1), "f": warnings.warn}, tmp_path / "code.pth")
    with pytest.raises(DenseNetTRTError, match="weights_only"):
        read_state_dict(tmp_path / "code.pth")


def test_pretrained_weights_are_never_downloaded(tmp_path, monkeypatch, checkpoint, torchvision_121):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DenseNetTRTError, match=r"never downloaded: get https://download\.pytorch\.org/models/densenet121-a639ec97\.pth"):
        create_model("densenet121", weights="imagenet")
    with pytest.raises(DenseNetTRTError, match="no published checkpoint for densenet264"):
        create_model("densenet264", weights="imagenet")
    cached = tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(checkpoint.read_bytes())
    assert _same_outputs(create_model("densenet121", weights="imagenet"), torchvision_121)
