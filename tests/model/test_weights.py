import os
import re
import warnings

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from densenet_trt import DenseNetTRTError, create_model
from densenet_trt.model.weights import read_state_dict


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
    with pytest.raises(DenseNetTRTError, match=re.escape(UNREADABLE)):
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
    with pytest.raises(DenseNetTRTError, match=re.escape(UNREADABLE)) as e:
        read_state_dict(cut)
    _no_unsafe_advice(str(e.value))


def test_pickled_code_is_not_run(tmp_path):
    torch.save({"w": torch.zeros(1), "f": warnings.warn}, tmp_path / "code.pth")
    with pytest.raises(DenseNetTRTError, match=r"code.pth is not a checkpoint densenet-trt can read .*: it "
                                               r"pickles _?warnings\.warn, which is not a tensor") as e:
        read_state_dict(tmp_path / "code.pth")
    _no_unsafe_advice(str(e.value))


def _no_unsafe_advice(message):
    """Nothing in ``message`` suggests loading the file with weights_only=False or allowlisting."""
    assert "weights_only" not in message and "Re-running" not in message
    assert "safe_globals" not in message and "\n" not in message and "\x1b" not in message


UNREADABLE = "is not a checkpoint densenet-trt can read (not a state_dict saved with torch.save, nor safetensors)"


@pytest.mark.parametrize("content", [os.urandom(4096), b"hello", b"PK\x03\x04" + os.urandom(300)])
def test_random_bytes_are_refused_without_unsafe_advice(tmp_path, content):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(DenseNetTRTError) as e:
        read_state_dict(path)
    assert str(e.value).startswith(f"{path} {UNREADABLE}: ")
    _no_unsafe_advice(str(e.value))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_with_nan_or_inf_weights_is_refused_at_load(tmp_path, bad, suffix):
    state = create_model("densenet_bc100_k12", block_config=(2, 2, 2)).state_dict()
    state["features.denseblock2.denselayer1.conv1.weight"][0, 0, 0, 0] = bad
    state["classifier.bias"][3] = bad
    path = tmp_path / f"diverged{suffix}"
    (save_file({k: v.contiguous() for k, v in state.items()}, path) if suffix == ".safetensors"
     else torch.save({"model": state}, path))
    # The first bad tensor in the file's order: safetensors keeps its keys sorted.
    with pytest.raises(DenseNetTRTError, match=rf"checkpoint {re.escape(str(path))} has NaN or Inf values in "
                                               r"(features\.denseblock2\.denselayer1\.conv1\.weight|classifier\.bias) "
                                               r"\(and 1 more tensor\)") as e:
        create_model("densenet_bc100_k12", weights=path, block_config=(2, 2, 2))
    assert "\n" not in str(e.value)


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
