"""INT8 post-training quantization with NVIDIA ModelOpt.

TensorRT 11 has no implicit INT8 (no calibrators, no INT8 builder flag): INT8 is explicit, as
QuantizeLinear/DequantizeLinear (Q/DQ) pairs whose scales come from calibration. ModelOpt
(``modelopt.torch.quantization``) inserts fake-quantizers into the model and calibrates them:

- ``max``: ModelOpt's INT8 default, ``INT8_DEFAULT_CFG``: per-channel weights, per-tensor
  activations, each scaled by the largest magnitude seen.
- ``mse``: ModelOpt's ``mse`` algorithm: activations as ``max``; each weight channel's range
  searched (0.25x to 4x its max) for the least squared quantization error.
- ``entropy``, ``percentile``: weights as ``max``; activation ranges from a histogram
  (ModelOpt's ``HistogramCalibrator``), cut where the KL divergence or the given percentile
  says. (The histogram's own ``mse`` cut is not offered: on the digits model it clipped the
  ReLU activations' long tails so hard that top-1 fell to 8%.)

A calibration is a folder: ``quantizers.pt`` (ModelOpt's own state, ``mto.modelopt_state``,
plus the quantizers' amax buffers), ``gate.npz`` (a few inputs the build's accuracy gate runs)
and ``report.json`` (the model and weights it belongs to, method, data fingerprint, per-layer
amax, layers kept in float, and float against fake-quantized accuracy).

Engines: the quantized model is captured as Q/DQ ONNX (ModelOpt's ONNX export) for OpenVINO,
and through ``torch.export`` under ``export_torch_mode()`` for TensorRT. ONNX Runtime places its
own Q/DQ (backends/onnxruntime_int8.py) from ranges its calibrator records here, on the same batches
(``onnxruntime_ranges.json``), with its own gate distance and held-out top-1 in the report.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import fnmatch
import importlib.metadata
import importlib.util
import io
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..engine.artifact import entry_path, writable_folder
from .calibration import (ALIASES, ORT_RANGES_FILE, Calibration, gate_tolerance, layer_counts, method_record,
                          modelopt_modules, write_calibration)
from ..choices import METHODS
from ..model.data import Dataset, Preprocessing, load_data, preprocessing, synthetic
from ..defaults import (CALIBRATION_BATCH_SIZE, CALIBRATION_METHOD, CALIBRATION_SAMPLES, CALIBRATIONS, MODEL, PERCENTILE,
                       RANDOM_SEED)
from ..errors import DenseNetTRTError
from ..backends.base import MODELOPT
from ..backends.onnxruntime_int8 import (ORT_METHODS, PLACEMENT, QUANTIZER, calibrate_ranges, prepared_model,
                                        qdq_model, run_qdq)
from ..progress import step
from ..model.registry import get_model_info, model_record, reference_model, weights_path
from .sensitivity import Budget, Evaluator, QDQEvaluator, Worst, check_budget, fit_budget
from ..engine.spec import BatchRange, Precision, check_image_size
from ..engine.verify import Comparison, compare, top1_text
from ..version import __version__

HISTOGRAM_METHODS = ("entropy", "percentile")
GATE_SAMPLES = 8


def check_method(method: str, percentile: float) -> None:
    if method not in METHODS:
        raise DenseNetTRTError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < percentile <= 100:
        raise DenseNetTRTError(f"percentile must be in (0, 100], got {percentile}")


# The DenseNet layers ModelOpt's INT8 config quantizes (its BatchNorm quantizers stay off).
LAYER_TYPES = (nn.Conv2d, nn.Linear, nn.AvgPool2d)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the layers ModelOpt puts quantizers on: convolutions, the classifier, pools."""
    return [name for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)]


def resolve_exclude(model: nn.Module, patterns: tuple[str, ...] | list[str]) -> list[str]:
    """The layers that ``patterns`` (globs over layer names, or ``stem``/``classifier``) keep in
    float; a pattern matching no quantizable layer is an error."""
    layers = quantizable_layers(model)
    chosen: list[str] = []
    for pattern in patterns:
        glob = ALIASES.get(pattern, pattern)
        matched = [name for name in layers if fnmatch.fnmatchcase(name, glob)]
        if not matched:
            raise DenseNetTRTError(
                f"exclude={pattern!r} matches no quantized layer; layers are named like "
                f"{', '.join(layers[:3])}, ..., {layers[-1]} (or use stem, classifier)"
            )
        chosen += [name for name in matched if name not in chosen]
    if len(chosen) == len(layers):
        raise DenseNetTRTError(
            f"exclude={','.join(patterns)} keeps all {len(layers)} quantized layers in float: excluding every layer "
            "leaves nothing to quantize; exclude fewer layers, or build a float engine"
        )
    return chosen


def quant_config(method: str, exclude_layers: list[str]) -> dict[str, Any]:
    """ModelOpt's INT8 config for ``method``, with ``exclude_layers`` left unquantized.
    Histogram methods calibrate outside ``mtq.quantize`` (its algorithms cannot pick their
    cut), so their config has no algorithm."""
    mtq, _ = modelopt_modules()
    config = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    if method == "mse":
        config["algorithm"] = {"method": "mse"}
    elif method in HISTOGRAM_METHODS:
        for entry in config["quant_cfg"]:
            if entry.get("quantizer_name") == "*input_quantizer":
                entry["cfg"] = {**entry["cfg"], "calibrator": "histogram"}
        config["algorithm"] = None
    for layer in exclude_layers:
        config["quant_cfg"].append({"quantizer_name": f"{layer}.*_quantizer", "enable": False})
    return config


def _quantizers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    mtq, _ = modelopt_modules()
    for name, module in model.named_modules():
        if isinstance(module, mtq.nn.TensorQuantizer):
            yield name, module


def _forward_all(batches: Callable[[], Iterator[torch.Tensor]]) -> Callable[[nn.Module], None]:
    def loop(model: nn.Module) -> None:
        with torch.no_grad():
            for x in batches():
                model(x)

    return loop


def quantize_model(
    net: nn.Module, method: str, exclude_layers: list[str], batches: Callable[[], Iterator[torch.Tensor]],
    percentile: float = PERCENTILE,
    progress: Callable[[str], None] = lambda message: None,
) -> nn.Module:
    """A fake-quantized copy of ``net``, calibrated on ``batches()``."""
    mtq, _ = modelopt_modules()
    model = copy.deepcopy(net).eval()
    config = quant_config(method, exclude_layers)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if method not in HISTOGRAM_METHODS:
            return mtq.quantize(model, config, _forward_all(batches))
        from modelopt.torch.quantization.calib import HistogramCalibrator
        from modelopt.torch.quantization.model_calib import enable_stats_collection

        model = mtq.quantize(model, config)
        enable_stats_collection(model)
        _forward_all(batches)(model)
        histograms = sum(isinstance(q._calibrator, HistogramCalibrator) for _, q in _quantizers(model)
                         if not q._disabled)
        progress(f"computing {method} ranges from {histograms} activation histograms")
        for _, quantizer in _quantizers(model):
            if quantizer._disabled:
                continue
            if isinstance(quantizer._calibrator, HistogramCalibrator):
                options = {"percentile": percentile} if method == "percentile" else {}
                quantizer.load_calib_amax(method, **options)
            else:
                quantizer.load_calib_amax()
            quantizer.enable_quant()
            quantizer.disable_calib()
    return model


def layer_report(model: nn.Module) -> dict[str, Any]:
    """Per quantizer, its amax; and which layers run quantized and which stay in float."""
    amax: dict[str, Any] = {}
    quantized, floating = set(), set()
    for name, quantizer in _quantizers(model):
        layer, kind = name.rsplit(".", 1)
        if kind == "output_quantizer" or not isinstance(model.get_submodule(layer), LAYER_TYPES):
            continue
        if quantizer.is_enabled and getattr(quantizer, "amax", None) is not None:
            value = quantizer.amax.detach().float().flatten()
            amax[name] = (
                round(float(value), 6) if value.numel() == 1 else
                {"channels": value.numel(), "min": round(float(value.min()), 6), "max": round(float(value.max()), 6)}
            )
            quantized.add(layer)
        else:
            floating.add(layer)
    floating -= quantized
    return {"quantized": sorted(quantized), "float": sorted(floating), "amax": amax}


def _logits(model: nn.Module, dataset: Dataset, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x)) for x in dataset.batches(batch_size)])


def _samples_line(samples: int, batch_size: int) -> str:
    """'all 20 samples (3 batches of 8, the last of 4)': every sample is used, the last batch may be short."""
    batches = -(-samples // batch_size)
    last = samples - (batches - 1) * batch_size
    return (f"all {samples} samples ({batches} batch{'es' if batches > 1 else ''} of {batch_size}"
            f"{'' if last == batch_size else f', the last of {last}'})")


def calibrate_model(
    net: nn.Module,
    model_record: dict[str, Any],
    data: Dataset,
    output: str | os.PathLike,
    *,
    image_size: int,
    method: str = CALIBRATION_METHOD,
    percentile: float = PERCENTILE,
    exclude: tuple[str, ...] | list[str] = (),
    batch_size: int = CALIBRATION_BATCH_SIZE,
    eval_data: Dataset | None = None,
    max_drop: float | None = None, max_float: int | None = None,
    onnxruntime: bool = True, force: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Calibration:
    """Calibrate float ``net`` (as ``model_record`` says) on ``data`` into the folder ``output``."""
    check_method(method, percentile)
    _check_budget(max_drop, max_float, eval_data)
    _check_data(net, data, eval_data, image_size, batch_size)
    exclude_layers = resolve_exclude(net, exclude)
    output = _check_output(Path(output), force)
    batches = -(-len(data) // batch_size)
    doing = f"calibrating {model_record['name']} with {method} on {_samples_line(len(data), batch_size)}"

    def calibration_batches() -> Iterator[torch.Tensor]:
        for i, images in enumerate(data.batches(batch_size), 1):
            progress(f"  calibration batch {i}/{batches}")
            yield torch.from_numpy(images)

    with step(progress, doing, "calibrated"):
        quantized = quantize_model(net, method, exclude_layers, calibration_batches, percentile, progress)
    ort = _onnxruntime_ranges(net, data, method, percentile, image_size, batch_size, progress) if onnxruntime else None
    budget = max_drop is not None and _keep_within(max_drop, max_float, net, quantized, eval_data, batch_size, progress, ort)
    layers = layer_report(quantized)
    progress(layer_counts(layers["quantized"], layers["float"], layers["amax"]))
    gate_set = Dataset((data if eval_data is None else eval_data).images[:GATE_SAMPLES], None, {})
    gate_cmp = gate_comparison("ModelOpt's placement", *(_logits(m, gate_set, batch_size) for m in (net, quantized)), progress)
    ort_record, ort_ranges, ort_model = _onnxruntime_placement(
        net, ort, method, batch_size, layers["float"], gate_set, output, progress)
    report = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"densenet-trt": __version__, "torch": torch.__version__,
                     "nvidia-modelopt": importlib.metadata.version("nvidia-modelopt")},
        "model": model_record, "image_size": image_size, "in_channels": net.in_channels,
        "preprocessing": data.source.get("preprocessing"),  # None for .npz/.npy/synthetic; build records it
        **method_record(method, percentile), "exclude": list(exclude) + (budget.floating if budget else []),
        "budget": budget.as_dict() if budget else None, PLACEMENT.name: ort_record,
        "data": {**data.record(), "batch_size": batch_size, "used": len(data),
                 "fit_for_accuracy": data.source.get("kind") != "synthetic"},
        "layers": {"quantized": layers["quantized"], "float": layers["float"]}, "amax": layers["amax"],
        "gate": {"samples": len(gate_set), "from": "calibration data" if eval_data is None else "evaluation data",
                 "fake_quant_vs_float": gate_cmp.as_dict(),
                 "tolerance": dataclasses.asdict(gate_tolerance(gate_cmp.max_abs, gate_cmp.cosine))},
        "evaluation": None if eval_data is None else evaluate(net, quantized, eval_data, batch_size, progress, ort_model),
    }
    _warn_on_accuracy(report, progress)
    calibration = write_calibration(output, quantized, gate_set.images, report, force, ort_ranges)
    progress(f"wrote {output}")
    return calibration


def gate_comparison(who: str, reference: torch.Tensor, quantized: torch.Tensor,
                    progress: Callable[[str], None]) -> Comparison:
    """``who``'s (a placement's) logits against float32 on the gate inputs, its samples counted
    decisive against the tolerance it sets for the builds (as their gate counts them); said
    with its verdict (``gate_line``)."""
    distance = compare(reference, quantized, Precision.FP32.tolerance)
    comparison = compare(reference, quantized, gate_tolerance(distance.max_abs, distance.cosine))
    progress(gate_line(who, comparison))
    return comparison


def gate_line(who: str, c: Comparison) -> str:
    """A placement's distance from eager float32 on the gate inputs, with its verdict: not a gate
    itself, it sets the tolerance the int8 builds from this calibration are gated with."""
    tol = c.tolerance
    return (f"{who} against eager float32 on the {c.samples} gate inputs: max abs {c.max_abs:.3g}, cosine "
            f"{c.cosine:.6f}, {top1_text(c.decisive_top1, c.decisive, c.samples)}; not a gate, for information: "
            f"int8 builds from it must stay within max abs {tol.allowed(c.scale):.3g} and cosine "
            f"{tol.min_cosine:.6f} of eager float32 (twice this distance plus the int8 kernels' allowance)")


def _check_data(net: nn.Module, data: Dataset, eval_data: Dataset | None, image_size: int, batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DenseNetTRTError(f"batch size must be a positive integer, got {batch_size!r}")
    if len(data) < batch_size:
        raise DenseNetTRTError(
            f"the data has {len(data)} samples, fewer than one batch of {batch_size}; give more "
            "data or a smaller batch_size=N"
        )
    for what, dataset in (("calibration data", data), ("evaluation data", eval_data)):
        if dataset is not None:
            dataset.check_for_model(net.in_channels, image_size, what)
            dataset.check_labels(net.classifier.out_features, what)


def _check_budget(max_drop: float | None, max_float: int | None, eval_data: Dataset | None) -> None:
    if max_drop is None:
        return
    check_budget(max_drop, max_float)
    if eval_data is None:
        raise DenseNetTRTError("max_drop=POINTS needs held-out data to measure the drop on: give eval_data=DATA")


def _keep_within(max_drop: float, max_float: int | None, net: nn.Module, quantized: nn.Module, eval_data: Dataset,
                 batch_size: int, progress: Callable[[str], None], ort: tuple[Any, dict] | None = None) -> Budget:
    """Leave in float, in ``quantized``, the fewest layers that hold the drop within ``max_drop``:
    for ModelOpt's fake-quantized model and, where ``ort`` (ONNX Runtime's prepared model and
    ranges) is given, for ONNX Runtime's own placement with the same layers in float."""
    evaluator = Evaluator(net, quantized, eval_data, batch_size)
    if ort is None:
        budget = fit_budget(evaluator, max_drop, max_float, progress)
        evaluator.keep_float(budget.floating)
    else:
        worst = Worst({MODELOPT.name: evaluator, PLACEMENT.name: QDQEvaluator(
            *ort, list(evaluator.layers), evaluator.reference, eval_data, batch_size)})
        budget = fit_budget(worst, max_drop, max_float, progress)
        budget = dataclasses.replace(budget, placements=worst.drops(budget.floating))
        worst.keep_float(budget.floating)
    progress(f"kept in float for a drop within {max_drop:g} points: {', '.join(budget.floating) or 'nothing'} "
             f"({budget.drop:.2f} points, {budget.runs} runs over the held-out data)")
    return budget


def _check_output(output: Path, force: bool, create: bool = True) -> Path:
    """``output``, after checking it may be written: absent, or ``force``; its folder writable
    (``create``: made if missing)."""
    if output.exists() and not force:
        raise DenseNetTRTError(f"{output} exists; pass force=True to replace it")
    writable_folder(output.parent, "give another output=DIR", create)
    return output


def _warn_on_accuracy(report: dict[str, Any], progress: Callable[[str], None]) -> None:
    evaluation = report["evaluation"]
    if evaluation and "float_top1" in evaluation and evaluation["float_top1"] - evaluation["int8_top1"] > 0.01:
        warnings.warn(
            f"int8 top-1 {evaluation['int8_top1']:.2%} is more than a point below float "
            f"{evaluation['float_top1']:.2%} on the held-out data; try another method=NAME or keep "
            "layers in float with exclude=PATTERN", stacklevel=3,
        )
    if not report["data"]["fit_for_accuracy"]:
        progress("synthetic data: this calibration exercises the pipeline; it is not fit for accuracy")


def calibrate(
    model: str = MODEL,
    *,
    data: str | os.PathLike | Dataset,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    preprocess: Preprocessing | None = None,
    samples: int | None = CALIBRATION_SAMPLES,
    eval_data: str | os.PathLike | Dataset | None = None, eval_samples: int | None = None,
    skip_bad: bool = False,
    seed: int = RANDOM_SEED,
    method: str = CALIBRATION_METHOD,
    percentile: float = PERCENTILE,
    exclude: tuple[str, ...] | list[str] = (),
    batch_size: int = CALIBRATION_BATCH_SIZE,
    max_drop: float | None = None, max_float: int | None = None,
    onnxruntime: bool = True,
    output: str | os.PathLike = CALIBRATIONS,
    name: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Calibration:
    """Calibrate preset ``model`` for INT8 and write ``output/name`` (default
    ``MODEL-METHOD-SIZE``), which ``build(precision="int8", calibration=...)`` reads.

    ``data``: an image folder, a ``.npz``/``.npy`` of preprocessed images, a ``Dataset``, or
    ``"synthetic"`` (random images: a smoke test, not fit for accuracy); ``preprocess`` for
    image folders, default the preset family's. ``samples``: images drawn with ``seed``
    (None: all). ``eval_data``: held-out data; with labels, float and fake-quantized top-1 are
    reported. ``exclude``: layers kept in float, globs over layer names or stem/classifier.
    ``max_drop``: also keep in float the fewest layers (at most ``max_float``, default half)
    that hold top-1 on ``eval_data`` (agreement with float without labels) within that many
    points of float, for ModelOpt's fake-quantized model and ONNX Runtime's own placement alike
    (``onnxruntime``: its ranges recorded, for its int8 builds; False: a pass less, and the budget
    ModelOpt's only); an error, and nothing written, where no such set exists.
    """
    check_method(method, percentile)
    _check_budget(max_drop, max_float, eval_data)
    if name is not None:
        entry_path(output, name)  # refused before any work
    info = get_model_info(model)
    size = check_image_size(info, image_size)
    output = _check_output(entry_path(output, name or f"{model}-{method}-{size}"), force, create=False)
    checkpoint = weights_path(info, weights)
    net = reference_model(model, checkpoint, num_classes, 0, {})
    if checkpoint is None:
        progress("no weights: random weights (the calibration exercises the pipeline only)")
    if preprocess is None:
        preprocess = preprocessing(info.family, size)
    shape = (net.in_channels, size)
    calibration_set = _dataset(data, samples, seed, "calibration data", shape, preprocess, skip_bad, progress)
    held_out = None if eval_data is None else _dataset(
        eval_data, eval_samples, seed + 1, "evaluation data", shape, preprocess, skip_bad, progress)
    record = model_record(model, net, checkpoint, 0, {})
    return calibrate_model(
        net, record, calibration_set, output, image_size=size, method=method, percentile=percentile,
        exclude=exclude, batch_size=batch_size, eval_data=held_out, max_drop=max_drop, max_float=max_float,
        onnxruntime=onnxruntime, force=force, progress=progress,
    )


def _dataset(source, count: int | None, seed: int, what: str, shape: tuple[int, int],
             preprocess: Preprocessing, skip_bad: bool, progress: Callable[[str], None]) -> Dataset:
    """``source`` as a Dataset: given as one, ``"synthetic"`` (random images of ``shape``,
    channels and side), or read from a file or folder."""
    if isinstance(source, Dataset):
        return source
    if str(source) == "synthetic":
        return synthetic(count or CALIBRATION_SAMPLES, shape[0], shape[1], seed)
    progress(f"reading {what} {source}")
    dataset = load_data(source, preprocess=preprocess, samples=count, seed=seed, skip_bad=skip_bad, progress=progress)
    if count is not None and len(dataset) < count:
        progress(f"the {what} has {len(dataset)} samples, fewer than the {count} asked for: all of them are used")
    return dataset


def evaluate(
    net: nn.Module, quantized: nn.Module, dataset: Dataset, batch_size: int,
    progress: Callable[[str], None] = lambda message: None, ort_model=None,
) -> dict[str, Any]:
    """Float against fake-quantized predictions on ``dataset``: top-1 where it has labels, and
    how often the two agree; the same for ONNX Runtime's QDQ model ``ort_model`` where given."""
    progress(f"evaluating float and fake-quantized on {len(dataset)} held-out samples")
    ref = _logits(net, dataset, batch_size).argmax(1)
    out = _logits(quantized, dataset, batch_size).argmax(1)
    result: dict[str, Any] = {"data": dataset.record(), "agreement": float((ref == out).double().mean())}
    ort = None if ort_model is None else run_qdq(ort_model, dataset.images, batch_size).argmax(1)
    if ort is not None:
        result["onnxruntime_agreement"] = float((ref == ort).double().mean())
    if dataset.labels is not None:
        labels = torch.from_numpy(dataset.labels)
        result["float_top1"] = float((ref == labels).double().mean())
        result["int8_top1"] = float((out == labels).double().mean())
        if ort is not None:
            result["onnxruntime_int8_top1"] = float((ort == labels).double().mean())
    return result


def _missing_onnx() -> list[str]:
    return [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]


def _onnxruntime_ranges(net: nn.Module, data: Dataset, method: str, percentile: float, image_size: int,
                        batch_size: int, progress: Callable[[str], None]) -> tuple[Any, dict[str, list[float]]] | None:
    """ONNX Runtime's prepared float model and its calibrator's ranges on the same batches of
    ``data`` (backends/onnxruntime_int8.py); None where onnxruntime is not installed."""
    if _missing_onnx():
        return None
    with step(progress, "calibrating ONNX Runtime's own Q/DQ placement on the same batches", "calibrated"):
        prepared = prepared_model(net, BatchRange(1, batch_size, batch_size), image_size)
        return prepared, calibrate_ranges(prepared, lambda: map(torch.from_numpy, data.batches(batch_size)),
                                          method, percentile)


def _onnxruntime_placement(
    net: nn.Module, ort: tuple[Any, dict[str, list[float]]] | None, method: str,
    batch_size: int, float_layers: list[str], gate_set: Dataset, output: Path, progress: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, list[float]] | None, Any]:
    """ONNX Runtime's own placement from ``ort`` (its prepared model and ranges): its QDQ model with ``float_layers``
    in float, and its distance from eager float32 on the gate inputs (its engines' gate); its record for
    the report, the ranges and the QDQ model (None, None without ``ort``)."""
    if ort is None:
        missing = ", ".join(_missing_onnx())
        if not missing:
            return {"ranges": None, "reason": "left out on request (--no-onnxruntime) when it was made"}, None, None
        progress(f"no ONNX Runtime ranges: {missing} not installed (onnxruntime int8 builds need them)")
        return {"ranges": None, "reason": f"{missing} not installed when it was made"}, None, None
    prepared, ranges = ort
    model = qdq_model(prepared, ranges, float_layers, str(output))
    ort_cmp = gate_comparison("ONNX Runtime's placement", _logits(net, gate_set, batch_size),
                              run_qdq(model, gate_set.images, batch_size), progress)
    record = {"ranges": ORT_RANGES_FILE, "quantizer": QUANTIZER,
              "method": ORT_METHODS[method], "tensors": len(ranges),
              "gate": {"qdq_vs_float": ort_cmp.as_dict(),
                       "tolerance": dataclasses.asdict(gate_tolerance(ort_cmp.max_abs, ort_cmp.cosine))}}
    return record, ranges, model
