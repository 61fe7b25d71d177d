"""A calibration folder: what ``calibrate`` writes and ``build`` reads for int8 engines.

``quantizers.pt`` (ModelOpt's own state, ``mto.modelopt_state``, plus the quantizers' amax
buffers), ``gate.npz`` (a few inputs the build's accuracy gate runs), ``onnxruntime_ranges.json``
(ONNX Runtime's calibrator's activation ranges, tensor name -> [low, high], for the onnxruntime
backend's own Q/DQ placement; absent where onnxruntime was not installed) and ``report.json``
(the calibration report document: the model and weights it belongs to, method, data
fingerprint, per-layer amax, layers kept in float, and float against fake-quantized accuracy,
for ModelOpt's placement and for ONNX Runtime's; each file's sha256; a digest of its own
content, as the engine manifest has, so that an edited report is refused).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import importlib.util
import io
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..engine.artifact import atomic_dir, check_files, sha256_file
from ..backends.base import Int8Placement
from ..model.data import Preprocessing
from ..errors import DenseNetTRTError
from ..engine.manifest import CALIBRATION, DIGEST, ModelRecord, check_digest, digest, dumps, parse, read_document
from ..progress import library_chatter
from ..reading import read_npz, read_text
from ..engine.spec import Precision
from ..engine.verify import Tolerance

if TYPE_CHECKING:
    from ..engine.load import Engine

QUANTIZERS_FILE = "quantizers.pt"
GATE_FILE = "gate.npz"
REPORT_FILE = "report.json"
ORT_RANGES_FILE = "onnxruntime_ranges.json"
INSTALL_HINT = "pip install 'densenet-trt[quantize]'"


def available() -> str:
    """Why ModelOpt cannot be used here ("" when it can)."""
    missing = [m for m in ("modelopt", "requests", "huggingface_hub") if importlib.util.find_spec(m) is None]
    if missing:
        return f"INT8 calibration needs NVIDIA ModelOpt; not installed: {', '.join(missing)}; {INSTALL_HINT}"
    return ""


def modelopt_modules():
    """``(mtq, mto)``, imported now, with ModelOpt's import-time chatter silenced."""
    reason = available()
    if reason:
        raise DenseNetTRTError(reason)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), library_chatter():
        warnings.simplefilter("ignore")
        import modelopt.torch.opt as mto
        import modelopt.torch.quantization as mtq
    return mtq, mto


def gate_tolerance(max_abs: float, cosine: float) -> Tolerance:
    """What an engine built from a calibration must meet against eager float32: twice the
    distance (``max_abs``, ``cosine``) of the fake-quantized model from it on the gate inputs,
    plus what the int8 tolerance allows the INT8 kernels against the fake-quantized model."""
    kernels = Precision.INT8.tolerance
    return Tolerance(
        atol=2 * max_abs + kernels.atol, rtol=kernels.rtol,
        min_cosine=max(0.0, kernels.min_cosine - 2 * (1 - cosine)), min_top1=1.0,
    )


# Short names for exclude patterns.
ALIASES = {"stem": "features.conv0", "classifier": "classifier"}


def method_record(method: str, percentile: float | None) -> dict[str, Any]:
    """What a report records of its calibration method."""
    return {
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "weights_quantization": f"int8 per output channel, {'mse' if method == 'mse' else 'max'}",
        "activations_quantization": f"int8 per tensor, {'max' if method == 'mse' else method}",
    }


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A calibration folder and its report."""

    path: Path
    report: dict[str, Any]

    @property
    def method(self) -> str:
        return self.report["method"]

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(**self.report["gate"]["tolerance"])

    def onnxruntime_record(self) -> dict[str, Any]:
        """The report's record of ONNX Runtime's own Q/DQ placement (its ranges, its gate);
        one line to recalibrate where the calibration has none."""
        record = self.report["onnxruntime"]
        if record.get("ranges") is None:
            raise DenseNetTRTError(
                f"the calibration {self.path} has no ONNX Runtime ranges ({record['reason']}), which "
                "onnxruntime int8 engines are placed with; calibrate again with densenet-trt[onnx] installed, "
                "without --no-onnxruntime"
            )
        return record

    def onnxruntime_ranges(self) -> dict[str, list[float]]:
        """ONNX Runtime's activation ranges, tensor name -> [low, high]."""
        self.onnxruntime_record()
        file = self.path / ORT_RANGES_FILE
        text = read_text(file, "calibration file")
        try:
            ranges = json.loads(text)["ranges"]
            ranges = {str(name): [float(low), float(high)] for name, (low, high) in ranges.items()}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise DenseNetTRTError(f"{file} is not a table of ONNX Runtime ranges; {CALIBRATION.fix}") from None
        bad = [name for name, (low, high) in ranges.items() if not (math.isfinite(low) and math.isfinite(high)
                                                                    and low <= high)]
        if bad:
            raise DenseNetTRTError(
                f"{file} has {len(bad)} ranges that are not finite with low <= high (e.g. {bad[0]}: "
                f"{ranges[bad[0]]}); {CALIBRATION.fix}"
            )
        return ranges

    def tolerance_for(self, placement: Int8Placement) -> Tolerance:
        """The gate tolerance against eager float32 of an engine whose Q/DQ ``placement`` placed
        (ModelOpt's, as calibrated, or the onnxruntime backend's own)."""
        if not placement.own:
            return self.tolerance
        return Tolerance(**self.onnxruntime_record()["gate"]["tolerance"])

    @property
    def float_layers(self) -> list[str]:
        """The quantizable layers the calibration keeps in float (exclude, max_drop)."""
        return self.report["layers"]["float"]

    @property
    def preprocessing(self) -> Preprocessing | None:
        """How the calibration's images were preprocessed: read from an image folder; None for
        data that came preprocessed (.npz, .npy, synthetic) and for reports before the field."""
        record = self.report.get("preprocessing")
        try:
            return None if record is None else Preprocessing.from_dict(record)
        except DenseNetTRTError as e:
            raise DenseNetTRTError(
                f"{self.path / REPORT_FILE}: field preprocessing is invalid ({e}); {CALIBRATION.fix}"
            ) from None

    def record(self) -> dict[str, Any]:
        """What an engine's manifest says about the calibration it came from."""
        return {
            "path": str(self.path.resolve()),
            "report_sha256": sha256_file(self.path / REPORT_FILE),
            "method": self.method,
            "exclude": self.report["exclude"],
            "data_sha256": self.report["data"]["sha256"],
            "synthetic": self.synthetic,
        }

    @property
    def synthetic(self) -> bool:
        """Calibrated on random images (``calibrate --synthetic``): a smoke test, not fit for accuracy."""
        return not self.report["data"]["fit_for_accuracy"]

    def check_model(self, model_record: dict[str, Any], image_size: int, in_channels: int) -> None:
        """Refuse a model, weights or input size other than the one calibrated."""
        mine = self.report["model"]
        what = f"the calibration {self.path} was made for"
        if mine["name"] != model_record["name"] or mine["config"] != model_record["config"]:
            raise DenseNetTRTError(
                f"{what} {mine['name']} {mine['config']}, not {model_record['name']} "
                f"{model_record['config']}; calibrate this model"
            )
        self.check_weights(model_record)
        if (self.report["image_size"], self.report["in_channels"]) != (image_size, in_channels):
            raise DenseNetTRTError(
                f"{what} {self.report['in_channels']}x{self.report['image_size']}x{self.report['image_size']} "
                f"inputs, not {in_channels}x{image_size}x{image_size}; calibrate with image_size={image_size}"
            )

    def check_weights(self, model_record: dict[str, Any]) -> None:
        """Refuse weights (``model_record``'s checkpoint file and sha256, or random of its seed)
        other than the calibrated ones."""
        mine = self.report["model"]
        what = f"the calibration {self.path} was made for"
        if (mine["weights"] or {}).get("sha256") != (model_record["weights"] or {}).get("sha256"):
            raise DenseNetTRTError(
                f"{what} other weights ({_weights_text(mine)}) than these ({_weights_text(model_record)}); "
                "calibrate with the same weights=PATH"
            )
        if mine["weights"] is None and mine["seed"] != model_record["seed"]:
            raise DenseNetTRTError(f"{what} random weights of seed {mine['seed']}, not {model_record['seed']}")

    def quantized_model(self, net: nn.Module) -> nn.Module:
        """A copy of float ``net`` with this calibration's quantizers restored."""
        _, mto = modelopt_modules()
        from modelopt.torch.quantization.utils import set_quantizer_state_dict

        file = self.path / QUANTIZERS_FILE
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                model = mto.restore_from_modelopt_state(copy.deepcopy(net).eval(), state["modelopt_state"])
                set_quantizer_state_dict(model, state["quantizers"])
        except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError, KeyError, TypeError,
                IndexError, AttributeError, AssertionError):
            # torch.load's unpickler, zip reader and ModelOpt's restore each fail their own way.
            raise DenseNetTRTError(
                f"{file} is not a calibration state (ModelOpt's quantizer state that calibrate writes) "
                f"for this model; {CALIBRATION.fix}"
            ) from None
        return model.eval()

    def gate_inputs(self) -> torch.Tensor:
        return torch.from_numpy(read_npz(self.path / GATE_FILE, "calibration file", ["images"])["images"])


def layer_counts(quantized: list[str], floating: list[str], amax: dict[str, Any]) -> str:
    """The quantized layers as ``build`` and ``info`` count an engine's int8 layers
    (``int8_report``): those with weights (a weight quantizer: convolution, linear) apart from
    the average pooling; and the layers kept in float."""
    weighted = sum(1 for layer in quantized if f"{layer}.weight_quantizer" in amax)
    return (f"{len(quantized)} layers int8 ({weighted} convolution and linear, {len(quantized) - weighted} "
            f"average pooling), {len(floating)} kept in float")


def check_calibration_precision(precision: Precision, calibration: str | os.PathLike | None) -> None:
    """A build's calibration: given for int8, and only for int8."""
    if precision is Precision.INT8 and calibration is None:
        raise DenseNetTRTError(
            "int8 needs a calibration: make one with `densenet-trt calibrate` (densenet_trt."
            "calibrate) and pass its folder as calibration=FOLDER"
        )
    if calibration is not None and precision is not Precision.INT8:
        raise DenseNetTRTError(f"calibration is for precision int8, not {precision}")


def _weights_text(record: dict[str, Any]) -> str:
    weights = record["weights"]
    return f"random, seed {record['seed']}" if weights is None else f"{Path(weights['file']).name}, sha256 {weights['sha256'][:12]}"


def load_calibration(path: str | os.PathLike) -> Calibration:
    """The calibration folder at ``path`` (or its report.json), after checking its files."""
    path = Path(path)
    folder = path.parent if path.name == REPORT_FILE else path
    report_path = folder / REPORT_FILE
    if not folder.is_dir() or not report_path.is_file():
        raise DenseNetTRTError(
            f"{path} is not a calibration folder (no {REPORT_FILE}); make one with `densenet-trt calibrate`"
        )
    report = read_document(report_path, CALIBRATION)
    checked = parse(ReportFields, report, str(report_path), CALIBRATION.fix)
    check_digest(report, report_path, CALIBRATION, "calibration")
    _check_consistent(report_path, checked, report)
    expected = {QUANTIZERS_FILE, GATE_FILE} | ({ORT_RANGES_FILE} if checked.onnxruntime.get("ranges") else set())
    if set(checked.files) != expected:
        raise DenseNetTRTError(
            f"{report_path} lists files {sorted(checked.files)}, not {', '.join(sorted(expected))}; "
            f"{CALIBRATION.fix}"
        )
    check_files(folder, checked.files, f"the calibration is damaged; {CALIBRATION.fix}", "calibration file")
    calibration = Calibration(folder, report)
    _check_gate_inputs(calibration, checked)
    return calibration


def engine_calibration(engine: Engine) -> Calibration:
    """The calibration an int8 engine was built from, checked against its manifest."""
    record = engine.manifest.calibration
    if record is None:
        raise DenseNetTRTError(f"the int8 engine {engine.path} records no calibration; rebuild the engine")
    cal = load_calibration(record.path)
    if sha256_file(cal.path / REPORT_FILE) != record.report_sha256:
        raise DenseNetTRTError(
            f"{cal.path} is not the calibration {engine.path} was built from (its report differs)"
        )
    return cal


def _check_consistent(path: Path, checked: ReportFields, report: dict[str, Any]) -> None:
    """What an edit that computes the digest again must still get right: the method's record,
    the excluded layers as the ones in float, and each placement's gate tolerance no looser than
    its recorded distance from float gives."""
    edited = f"the report was edited; {CALIBRATION.fix}"
    recorded = {name: report.get(name) for name in ("method", "percentile", "weights_quantization",
                                                      "activations_quantization")}
    if recorded != method_record(checked.method, report.get("percentile")):
        raise DenseNetTRTError(f"{path}: field method ({checked.method!r}) disagrees with its record of "
                               f"percentile and quantization; {edited}")
    layers = checked.layers
    names = layers["quantized"] + layers["float"]
    kept = {name for pattern in checked.exclude for name in names
            if fnmatch.fnmatchcase(name, ALIASES.get(pattern, pattern))}
    if kept != set(layers["float"]):
        raise DenseNetTRTError(
            f"{path}: field exclude ({', '.join(checked.exclude) or 'nothing'}) keeps {len(kept)} layers in "
            f"float, not the {len(layers['float'])} of field layers.float; {edited}"
        )
    gates = [("gate", checked.gate, "fake_quant_vs_float")]
    if checked.onnxruntime.get("ranges") is not None:
        gates.append(("onnxruntime.gate", checked.onnxruntime.get("gate"), "qdq_vs_float"))
    for field, gate, distance in gates:
        gate = gate if isinstance(gate, dict) else {}
        record = parse(_GateRecord, {"tolerance": gate.get("tolerance"), "distance": gate.get(distance)},
                       f"{path} field {field}", CALIBRATION.fix)
        wider = record.tolerance.loosened(gate_tolerance(record.distance.max_abs, record.distance.cosine))
        if wider:
            raise DenseNetTRTError(
                f"{path}: field {field}.tolerance is looser in {', '.join(wider)} than its distance from float "
                f"({distance}) allows; {edited}"
            )


@dataclasses.dataclass(frozen=True)
class _Distance:
    max_abs: float
    cosine: float


@dataclasses.dataclass(frozen=True)
class _GateRecord:
    """A gate a report records: its tolerance and the distance from float it was made from."""

    tolerance: Tolerance
    distance: _Distance


def _check_gate_inputs(calibration: Calibration, report: ReportFields) -> None:
    """The gate inputs: images of the calibrated shape, every value finite."""
    file = calibration.path / GATE_FILE
    try:
        images = calibration.gate_inputs()
    except DenseNetTRTError:  # the reader's advice to write it with numpy is not for this file
        raise DenseNetTRTError(f"{file} is not a gate input archive; {CALIBRATION.fix}") from None
    shape = (report.in_channels, report.image_size, report.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != shape or images.dtype != torch.float32 or not len(images):
        raise DenseNetTRTError(
            f"{file} holds {images.dtype} images of shape {tuple(images.shape)}, not float32 (N, "
            f"{', '.join(map(str, shape))}); {CALIBRATION.fix}"
        )
    bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
    if bad:
        raise DenseNetTRTError(
            f"{file} has NaN or Inf values in {bad} of its {len(images)} gate inputs; the engine's "
            f"accuracy gate cannot run on them: {CALIBRATION.fix}"
        )


@dataclasses.dataclass(frozen=True)
class ReportFields:
    """The fields of a calibration report that are read back, with their types."""

    model: ModelRecord
    image_size: int
    in_channels: int
    method: str
    exclude: list[str]
    layers: dict[str, list[str]]
    data: dict[str, Any]
    gate: dict[str, Any]
    onnxruntime: dict[str, Any]
    files: dict[str, str]


def write_calibration(output: Path, quantized: nn.Module, gate_images: np.ndarray, report: dict[str, Any],
                      force: bool, ort_ranges: dict[str, list[float]] | None = None) -> Calibration:
    """Write the calibration folder ``output`` whole or not at all (an existing one only with
    ``force``): the quantizers' state, the gate inputs, ONNX Runtime's ranges (where there are
    any) and the report, which lists each file's sha256 and a digest of its own content."""
    _, mto = modelopt_modules()
    from modelopt.torch.quantization.utils import get_quantizer_state_dict

    with atomic_dir(output, force) as folder:
        torch.save(
            {"modelopt_state": mto.modelopt_state(quantized), "quantizers": get_quantizer_state_dict(quantized)},
            folder / QUANTIZERS_FILE,
        )
        np.savez(folder / GATE_FILE, images=gate_images)
        names = [QUANTIZERS_FILE, GATE_FILE]
        if ort_ranges is not None:
            (folder / ORT_RANGES_FILE).write_text(json.dumps({"ranges": ort_ranges}, indent=1), encoding="utf-8")
            names.append(ORT_RANGES_FILE)
        report = {**report, "files": {name: sha256_file(folder / name) for name in names}}
        report[DIGEST] = digest(report)
        (folder / REPORT_FILE).write_text(dumps(report, CALIBRATION), encoding="utf-8")
    return Calibration(output, report)
