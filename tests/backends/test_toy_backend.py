"""A backend added in one file: a toy that runs eager PyTorch on the CPU, registered for these
tests only. Every command either works with it or says in one line what it lacks.

Registering it takes the registry line (``backends.BACKENDS``) alone: the manifest reader takes
any backend name, and loading an engine of a backend that is not registered is refused by the
registry (``backends.get_backend``). A real backend also joins the ``backends`` of the precisions
it builds in spec.py, which ``--backend auto`` reads.
"""

import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import SMALL
from densenet_trt import DenseNetTRTError, load
from densenet_trt.backends import BACKENDS
from densenet_trt.backends.base import MODELOPT, Availability, Runtime, no_triton_runner, triton_libtorch
from densenet_trt.backends.settings import Settings
from densenet_trt.engine.build import build
from densenet_trt.engine.capture import capture_torchscript
from densenet_trt.cli import main
from densenet_trt.model.network import DenseNet
from densenet_trt.engine.spec import Precision
from densenet_trt.deploy.triton import export_triton

FILES = {"state-dict": "model.pt", "torchscript": "model.ts"}


class ToyBackend:
    """Eager PyTorch on the CPU in float32: a state dict (which Triton cannot run) or TorchScript."""

    name = "toy"
    devices = ("cpu",)
    formats = tuple(FILES)
    extra = ""
    settings = Settings
    int8_placement = MODELOPT

    def available(self) -> Availability:
        return Availability(True)

    def precisions(self, device: str) -> dict[Precision, str]:
        return {Precision.FP32: "eager float32"} if device == "cpu" else {}

    def io_dtype(self, precision: Precision) -> torch.dtype:
        return torch.float32

    def versions(self) -> dict[str, str]:
        return {}

    def files(self, fmt: str) -> tuple[str, ...]:
        return (FILES[fmt],)

    def build(self, model, spec, folder: Path) -> dict:
        if spec.format == "torchscript":
            torch.jit.save(capture_torchscript(model), str(folder / FILES["torchscript"]))
        else:
            torch.save(model.state_dict(), folder / FILES["state-dict"])
        return {}

    def load(self, folder: Path, manifest) -> Runtime:
        if manifest.format == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(str(folder / FILES["torchscript"]), map_location="cpu")
        else:
            model = DenseNet(**manifest.model.config).eval()
            model.load_state_dict(torch.load(folder / FILES["state-dict"]))

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x.to("cpu", torch.float32))

        return Runtime(folder, manifest, run)

    def check_compatible(self, manifest) -> None:
        pass

    def triton_target(self, fmt: str):
        return triton_libtorch(FILES[fmt], "KIND_CPU") if fmt == "torchscript" else no_triton_runner(self.name, fmt)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy registered for this module; yields the folder its engines go in."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(BACKENDS, "toy", ToyBackend())
        yield tmp_path_factory.mktemp("toy")


def build_toy(output: Path, fmt: str) -> Path:
    artifact = build("densenet_bc100_k12", backend="toy", format=fmt, batch="1:2:4", overrides=SMALL,
                     output=output, name=fmt, progress=lambda message: None)
    return artifact.path


@pytest.fixture(scope="module")
def engine(toy) -> Path:
    return build_toy(toy, "state-dict")


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no traceback
    return result


def test_build_gates_and_loads_the_toy_engine(engine):
    loaded = load(engine)
    m = loaded.manifest
    assert (m.backend, m.format, m.precision, m.accuracy.passed) == ("toy", "state-dict", Precision.FP32, True)
    assert loaded(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_info_verify_and_compare_work(engine):
    info = cli("info", engine)
    assert info.exit_code == 0 and "toy (state-dict, model.pt)" in info.output and "runs here  yes" in info.output
    verify = cli("verify", engine, "--samples", "2", "--seed", "0")
    assert verify.exit_code == 0 and "match eager PyTorch" in verify.output
    compare = cli("compare", engine, "--samples", "2")
    assert compare.exit_code == 0
    assert compare.output.splitlines()[-1] == "toy engines expose no intermediate outputs: only the logits are compared"


def test_profile_measures_latency_and_throughput_and_says_what_the_toy_lacks(engine):
    result = cli("profile", engine, "--batch-size", "2", "--iterations", "3", "--warmup-iterations", "1",
                 "--vs", "none", "--layers", "2", "-q")
    assert result.exit_code == 0, result.output
    assert "Latency:" in result.output and "Throughput:" in result.output and "| back to back |" in result.output
    assert "toy on the CPU: one request at a time (each call uses every CPU thread)" in result.output
    assert "[0] state-dict, batch 2: per-layer timing is not offered by toy\n" in result.output


def test_export_triton_refuses_a_format_triton_cannot_run_in_one_line(engine, toy):
    result = cli("export-triton", engine, "--repository", toy / "repo")
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: Triton cannot serve the state-dict format of backend toy; Triton serves "
                                    "TensorRT plans (backend tensorrt or tensorrt-onnx, format engine)")
    assert "TorchScript (backend tensorrt or torchscript or toy, format torchscript), ONNX" in result.stderr
    assert "e.g. --backend onnxruntime on a CPU or --backend tensorrt --format engine on an NVIDIA GPU" in result.stderr
    with pytest.raises(DenseNetTRTError, match="Triton cannot serve the state-dict format of backend toy"):
        export_triton(engine, toy / "repo")
    assert not (toy / "repo").exists()


def test_export_triton_writes_the_target_the_toy_gives(toy):
    folder = export_triton(build_toy(toy, "torchscript"), toy / "repo", model_name="toy")
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.pt"]
    config = (folder / "config.pbtxt").read_text()
    assert 'platform: "pytorch_libtorch"' in config and "kind: KIND_CPU" in config and 'name: "input__0"' in config
