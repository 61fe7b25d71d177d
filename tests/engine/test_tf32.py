"""Issue 12, defect 2: fp32 engines built with allow_tf32 are gated with TF32's own tolerance,
which the manifest records; verify reuses the recorded one and refuses one loosened by an edit.

TF32 itself needs an Ampere GPU. On the CPU its arithmetic is emulated: the inputs and weights
of every convolution and matmul rounded to TF32's 10 mantissa bits, then float32 arithmetic."""

import copy
import dataclasses
import shutil
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from densenet_trt import DenseNetTRTError
from densenet_trt.engine.build import verify_engine
from densenet_trt.engine.capture import example_input
from densenet_trt.cli import main
from densenet_trt.model.registry import create_model
from densenet_trt.engine.spec import TF32_TOLERANCE, BatchRange, BuildSpec, Precision
from densenet_trt.engine.verify import Tolerance, compare



def tf32(t: torch.Tensor, mode: str) -> torch.Tensor:
    """``t`` (float32) with its mantissa cut to TF32's 10 bits: rounded to nearest even, or
    truncated (what a kernel that drops the low bits does)."""
    bits = t.contiguous().view(torch.int32)
    if mode == "nearest":
        bits = bits + 0x0FFF + ((bits >> 13) & 1)
    return (bits & ~0x1FFF).view(torch.float32)


def emulated_tf32(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    model = copy.deepcopy(model)
    for layer in model.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.weight.data = tf32(layer.weight.data, mode)
            layer.register_forward_pre_hook(lambda _, args: (tf32(args[0], mode),))
    return model


def test_the_rounding_is_tf32s():
    x = torch.tensor([1 + 2**-10, 1 + 2**-11 + 2**-12, 1 + 2**-12])
    assert tf32(x, "truncate").tolist() == [1 + 2**-10, 1.0, 1.0]
    assert tf32(x, "nearest").tolist() == [1 + 2**-10, 1 + 2**-10, 1.0]


@pytest.mark.parametrize("mode", ["nearest", "truncate"])
def test_tf32_arithmetic_fails_the_fp32_tolerance_and_meets_tf32s(mode):
    """The defect: an allow_tf32 engine was held to fp32's 1e-4 and could never pass."""
    net = create_model("densenet_bc40_k12").eval()
    x = example_input(4, 32, seed=3)
    with torch.no_grad():
        reference, output = net(x), emulated_tf32(net, mode)(x)
    assert not compare(reference, output, Precision.FP32.tolerance).passes()
    assert compare(reference, output, Precision.FP32.gate_tolerance(tf32=True)).passes()


def test_tf32_has_its_own_tolerance_for_fp32_only():
    assert Precision.FP32.gate_tolerance(tf32=True) == TF32_TOLERANCE
    assert Precision.FP32.gate_tolerance(tf32=False) == Precision.FP32.tolerance
    for precision in (Precision.FP16, Precision.BF16, Precision.INT8):
        assert precision.gate_tolerance(tf32=True) == precision.tolerance
    # Between fp32's and fp16's: TF32 rounds convolution inputs like fp16 but keeps float32 activations.
    assert not TF32_TOLERANCE.loosened(Precision.FP16.tolerance)
    assert TF32_TOLERANCE.loosened(Precision.FP32.tolerance) == ["atol", "rtol", "min_cosine"]


def test_a_spec_allows_tf32_only_when_asked():
    spec = BuildSpec(precision="fp32", batch=BatchRange.parse("1"), image_size=32)
    assert not spec.tf32
    assert dataclasses.replace(spec, options={"allow_tf32": True}).tf32
    assert not dataclasses.replace(spec, options={"allow_tf32": False}).tf32


@pytest.fixture(scope="module")
def engine(shared_engine):
    return shared_engine


def test_the_manifest_records_tf32_and_the_tolerance_the_gate_used(engine):
    m = engine.manifest
    assert m.tf32 is False
    assert m.accuracy.tolerance == Precision.FP32.tolerance
    assert m.gate_tolerance() == Precision.FP32.tolerance
    assert m.to_json()["accuracy"]["tolerance"] == dataclasses.asdict(Precision.FP32.tolerance)
    tf32_engine = dataclasses.replace(m, tf32=True, accuracy=dataclasses.replace(m.accuracy, tolerance=TF32_TOLERANCE))
    assert tf32_engine.gate_tolerance() == TF32_TOLERANCE
    assert dataclasses.replace(m, tf32=True, accuracy=dataclasses.replace(m.accuracy, tolerance=None)
                               ).gate_tolerance() == TF32_TOLERANCE


def _with_tolerance(engine, tmp_path, edit_manifest, tolerance: Tolerance, **fields):
    folder = shutil.copytree(engine.path, tmp_path / "edited")
    edit_manifest(folder, lambda m: (m["accuracy"].update(tolerance=dataclasses.asdict(tolerance)), m.update(fields)))
    return folder


def test_verify_reuses_the_recorded_tolerance(engine, tmp_path, edit_manifest):
    stricter = Tolerance(0.0, 0.0, 1.0, 1.0)
    assert verify_engine(engine.path, 4, seed=1).results[0][1].tolerance == Precision.FP32.tolerance
    folder = _with_tolerance(engine, tmp_path, edit_manifest, stricter)
    verification = verify_engine(folder, 4, seed=1)
    assert {c.tolerance for _, c in verification.results} == {stricter}


@pytest.mark.parametrize("loosened, fields", [
    (Tolerance(1.0, 1e-4, 0.99999, 1.0), "atol"),
    (Tolerance(1e-4, 1e-4, 0.5, 0.0), "min_cosine, min_top1"),
    (TF32_TOLERANCE, "atol, rtol, min_cosine"),
])
def test_an_edit_that_loosens_the_recorded_tolerance_is_refused(engine, tmp_path, edit_manifest, loosened, fields):
    """The digest is made again here, as a deliberate edit would: the bound still holds."""
    folder = _with_tolerance(engine, tmp_path, edit_manifest, loosened)
    with pytest.raises(DenseNetTRTError, match=f"field accuracy.tolerance .* is looser than the fp32 gate's .* in {fields}"):
        verify_engine(folder, 4)
    result = CliRunner().invoke(main, ["verify", str(folder)])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1 and "looser" in result.stderr


def test_claiming_tf32_for_a_backend_without_it_is_refused(engine, tmp_path, edit_manifest):
    folder = _with_tolerance(engine, tmp_path, edit_manifest, TF32_TOLERANCE, tf32=True)
    with pytest.raises(DenseNetTRTError, match="says tf32, which backend onnxruntime never builds"):
        verify_engine(folder, 4)


def test_the_cli_says_allow_tf32_as_its_flag():
    from densenet_trt.cli import as_flags

    assert as_flags("use allow_tf32=True", main.commands["build"]) == "use --allow-tf32"


@pytest.mark.parametrize("device, precision, tf32_after", [
    ("cuda", Precision.FP32, False), ("cuda", Precision.FP16, True), ("cpu", Precision.FP32, True)])
def test_loading_an_fp32_engine_on_cuda_turns_tf32_off(device, precision, tf32_after):
    """PyTorch lets cuDNN round float32 convolutions to TF32 by default: on an H200 a
    densenet121 TorchScript fp32 engine was then 2.0e-3 off eager float32 (the fp32 tolerance
    allowed 4.2e-4) and its build was refused. The torch backends' fp32 is true float32."""
    from densenet_trt.backends._torch import apply_float32

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    try:
        apply_float32(SimpleNamespace(device=SimpleNamespace(type=device), precision=precision))
        assert cudnn.allow_tf32 is tf32_after and matmul.allow_tf32 is tf32_after
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before
