"""Where INT8 loses accuracy: per-layer sensitivity and the accuracy budget.

Both switch ModelOpt's quantizers of a calibrated (fake-quantized) model on and off, layer by
layer (``TensorQuantizer.enable()`` / ``disable()``: a disabled quantizer passes its tensor
through in float), and score the model on held-out data against eager float32:

- top-1 where the data has labels, else agreement with float top-1 (the *metric*); a drop is
  the float metric less the quantized one, in percentage points;
- output SQNR: 10 log10 of the float logits' energy over the error's, in dB.

Per layer (and per dense block, transition, stem and classifier as one group), two numbers:
what quantizing it *alone* costs (every other layer float), and what leaving it *in float*
recovers (every other layer quantized). The budget search keeps the fewest layers in float,
most sensitive first, until the drop is within ``max_drop`` points; on several placements of
one calibration (``Worst``: ModelOpt's and ONNX Runtime's), until each one's drop is.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..engine.artifact import atomic_path, sha256_file
from ..backends.onnxruntime_int8 import qdq_model, run_qdq
from .calibration import Calibration, load_calibration, modelopt_modules
from ..model.data import Dataset, Preprocessing, load_data, preprocessing
from ..defaults import SENSITIVITY_BATCH_SIZE, SENSITIVITY_SEED
from ..errors import DenseNetTRTError
from ..progress import quiet, reporting
from ..model.registry import get_model_info, model_record, reference_model

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Score:
    """A model's predictions on held-out data against eager float32's."""

    top1: float | None  # None without labels
    agreement: float  # with float top-1
    sqnr_db: float | None  # None where the logits equal float's (no error)

    def metric(self) -> float:
        return self.agreement if self.top1 is None else self.top1


def logits(model: nn.Module, data: Dataset, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x)) for x in data.batches(batch_size)])


def score(out: torch.Tensor, ref: torch.Tensor, labels: np.ndarray | None) -> Score:
    predicted = out.argmax(1)
    error = float((out.double() - ref.double()).pow(2).sum())
    signal = float(ref.double().pow(2).sum())
    return Score(
        top1=None if labels is None else float((predicted == torch.from_numpy(labels)).double().mean()),
        agreement=float((predicted == ref.argmax(1)).double().mean()),
        sqnr_db=None if error == 0 else round(10 * math.log10(max(signal, 1e-30) / error), 3),
    )


def points_below(reference: Score, result: Score) -> float:
    """Points of the metric ``result`` lost against ``reference``."""
    return round(100 * (reference.metric() - result.metric()), 6)


def group_of(layer: str) -> str:
    """The part of the network a layer belongs to: stem, denseblockN, transitionN, classifier."""
    parts = layer.split(".")
    if parts[0] == "features":
        return parts[1] if len(parts) > 2 else "stem"
    return parts[0]


def quantized_layers(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Each layer with enabled quantizers (input, weight), in model order, and those quantizers."""
    mtq, _ = modelopt_modules()
    layers: dict[str, list[nn.Module]] = {}
    for name, module in model.named_modules():
        if isinstance(module, mtq.nn.TensorQuantizer) and module.is_enabled:
            layers.setdefault(name.rsplit(".", 1)[0], []).append(module)
    return layers


class Evaluator:
    """A fake-quantized model scored on held-out data, with any set of its layers in float."""

    def __init__(self, net: nn.Module, quantized: nn.Module, data: Dataset, batch_size: int):
        self.quantized, self.data, self.batch_size = quantized, data, batch_size
        self.layers = quantized_layers(quantized)
        self.reference = logits(net, data, batch_size)
        self.float = score(self.reference, self.reference, data.labels)
        self.runs = 0  # passes of the fake-quantized model over the data

    def score(self, floating: Iterable[str]) -> Score:
        """The score with the layers ``floating`` in float and every other one quantized."""
        floating = set(floating)
        self.runs += 1
        try:
            for layer, quantizers in self.layers.items():
                for quantizer in quantizers:
                    if layer in floating:
                        quantizer.disable()
            return score(logits(self.quantized, self.data, self.batch_size), self.reference, self.data.labels)
        finally:
            for quantizers in self.layers.values():
                for quantizer in quantizers:
                    quantizer.enable()

    def drop(self, result: Score) -> float:
        """Points of the metric lost against float."""
        return points_below(self.float, result)

    def keep_float(self, layers: Iterable[str]) -> None:
        """Leave ``layers`` in float for good (what a calibration then saves)."""
        for layer in layers:
            for quantizer in self.layers.pop(layer):
                quantizer.disable()


class QDQEvaluator:
    """ORT's QDQ model of the prepared ``model`` from ``ranges`` scored on held-out ``data``
    against eager float32's logits ``reference``, with any set of ``layers`` in float: the
    interface of ``Evaluator``, for the onnxruntime backend's own placement."""

    def __init__(self, model, ranges: dict[str, list[float]], layers: list[str], reference: torch.Tensor,
                 data: Dataset, batch_size: int):
        self.model, self.ranges, self.reference, self.data, self.batch_size = model, ranges, reference, data, batch_size
        self.layers = list(layers)
        self.kept: list[str] = []  # in float for good
        self.float = score(reference, reference, data.labels)
        self.runs = 0

    def score(self, floating) -> Score:
        self.runs += 1
        with reporting(quiet):
            proto = qdq_model(self.model, self.ranges, [*self.kept, *floating], "being made")
        return score(run_qdq(proto, self.data.images, self.batch_size), self.reference, self.data.labels)

    def drop(self, result: Score) -> float:
        return points_below(self.float, result)

    def keep_float(self, layers) -> None:
        self.kept += [layer for layer in layers if layer not in self.kept]
        self.layers = [layer for layer in self.layers if layer not in self.kept]


class Worst:
    """Evaluators of the same layers on the same held-out data (a calibration's int8 placements,
    by name), scored by the worst of them: what a budget that every placement honours fits on."""

    def __init__(self, evaluators: dict[str, Any]):
        self.evaluators = evaluators
        first = next(iter(evaluators.values()))
        self.layers, self.data, self.float, self.drop = first.layers, first.data, first.float, first.drop
        self.runs = 0
        self.seen: dict[frozenset[str], dict[str, Score]] = {}

    def score(self, floating: Iterable[str]) -> Score:
        floating = list(floating)
        self.runs += 1
        scores = {name: e.score(floating) for name, e in self.evaluators.items()}
        self.seen[frozenset(floating)] = scores
        return min(scores.values(), key=lambda s: (s.metric(), _db(s)))

    def drops(self, floating: Iterable[str]) -> dict[str, float]:
        """Each placement's drop with ``floating`` in float (as last scored)."""
        return {name: self.evaluators[name].drop(s) for name, s in self.seen[frozenset(floating)].items()}

    def keep_float(self, layers: Iterable[str]) -> None:
        layers = list(layers)
        for evaluator in self.evaluators.values():
            evaluator.keep_float(layers)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A layer or a group of layers: its score quantized alone and left alone in float."""

    name: str
    group: str
    layers: int
    alone: Score | None  # only this quantized
    in_float: Score  # only this in float


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    metric: str  # "top-1" or "agreement"
    samples: int
    float: Score
    quantized: Score
    layers: list[Entry]
    groups: list[Entry]

    def cost(self, entry: Entry) -> float | None:
        """Points lost with only ``entry`` quantized."""
        return None if entry.alone is None else points_below(self.float, entry.alone)

    def recovery(self, entry: Entry) -> float:
        """Points won back by leaving ``entry`` in float."""
        return points_below(entry.in_float, self.quantized)

    def ranked(self, entries: list[Entry] | None = None) -> list[Entry]:
        """Most sensitive first: what float recovers, then the SQNR float gains, then the cost alone."""
        return sorted(entries if entries is not None else self.layers, key=lambda e: (
            -self.recovery(e), -_db(e.in_float), -(self.cost(e) or 0.0), _db(e.alone)))

    def as_dict(self) -> dict[str, Any]:
        def entry(e: Entry) -> dict[str, Any]:
            return {**dataclasses.asdict(e), "cost_points": self.cost(e), "recovery_points": self.recovery(e)}

        return {"metric": self.metric, "samples": self.samples, "float": dataclasses.asdict(self.float),
                "quantized": dataclasses.asdict(self.quantized),
                "groups": [entry(e) for e in self.ranked(self.groups)],
                "layers": [entry(e) for e in self.ranked()]}

    def table(self, top: int | None = None) -> str:
        """The groups, then the ``top`` most sensitive layers (default all), as text."""
        lines = [f"held-out: {self.samples} samples; {self.metric}: float {_pct(self.float)}, every layer "
                 f"int8 {_pct(self.quantized)} (output SQNR {_sqnr(self.quantized)})",
                 "'int8 alone': only this quantized; 'float alone': only this kept in float; drop and "
                 "recovery in points of " + self.metric, ""]
        header = (f"{'':>4}  {{:<44}} {'layers':>6}  {'int8 alone: drop':>16} {'SQNR':>9}  "
                  f"{'float alone: recovers':>21} {'SQNR':>9}")
        for title, entries in (("group", self.ranked(self.groups)), ("layer", self.ranked()[:top])):
            if not entries:
                continue
            lines.append(header.format(title))
            for rank, e in enumerate(entries, 1):
                cost = self.cost(e)
                lines.append(
                    f"{rank:>4}  {e.name:<44} {e.layers:>6}  {'-' if cost is None else f'{cost:+.2f}':>16} "
                    f"{_sqnr(e.alone):>9}  {self.recovery(e):>+21.2f} {_sqnr(e.in_float):>9}")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def write_json(self, path: str | os.PathLike, force: bool = False) -> None:
        with atomic_path(path, force=force) as tmp:
            tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")


def plot(result: Sensitivity, path: str | os.PathLike, force: bool = False) -> None:
    """A PNG: per layer (model order, coloured by group) the output SQNR with only it quantized
    and what keeping only it in float gains; per group the points lost alone and recovered."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DenseNetTRTError("plot needs matplotlib: pip install matplotlib") from None
    figure = Figure(figsize=(14, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    per_layer, per_group = figure.subplots(1, 2, width_ratios=(3, 1))
    names = list(dict.fromkeys(e.group for e in result.groups or result.layers))
    colours = {g: f"C{i % 10}" for i, g in enumerate(names)}
    base = _db(result.quantized)
    x = range(len(result.layers))
    gains = [min(_db(e.in_float), base + 60) - base for e in result.layers]
    per_layer.bar(x, gains, color=[colours[e.group] for e in result.layers])
    per_layer.set_ylabel("output SQNR gained by keeping only this layer in float (dB)")
    if all(e.alone is not None for e in result.layers):
        alone = per_layer.twinx()
        alone.plot(x, [min(_db(e.alone), 99) for e in result.layers], "k.", label="SQNR with only this layer int8")
        alone.set_ylabel("output SQNR with only this layer int8 (dB, dots)")
    per_layer.set_xticks(list(x), [e.name.replace("features.", "").replace("denselayer", "L")
                                   for e in result.layers], rotation=90, fontsize=6)
    per_layer.set_title(f"per layer ({result.samples} held-out samples)")
    width = 0.4
    for offset, label, values in (
            (-width / 2, "drop with only this int8", [result.cost(e) or 0.0 for e in result.groups]),
            (width / 2, "recovered with only this float", [result.recovery(e) for e in result.groups])):
        per_group.bar([i + offset for i in range(len(result.groups))], values, width, label=label)
    per_group.set_xticks(range(len(result.groups)), [e.name for e in result.groups], rotation=45)
    per_group.set_ylabel(f"points of {result.metric}")
    per_group.set_title("per group")
    per_group.legend(fontsize=8)
    with atomic_path(path, force=force) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def _pct(s: Score) -> str:
    return f"{100 * s.metric():.2f}%"


def _sqnr(s: Score | None) -> str:
    if s is None:
        return "-"
    return "exact" if s.sqnr_db is None else f"{s.sqnr_db:.1f} dB"


def _db(s: Score | None) -> float:
    """SQNR for sorting: no error is the best there is."""
    return -math.inf if s is None else (math.inf if s.sqnr_db is None else s.sqnr_db)


def measure(evaluator: Evaluator, layers: list[str] | None = None, alone: bool = True, by_group: bool = True,
            progress: Progress = lambda message: None) -> Sensitivity:
    """Each of ``layers`` (default: every quantized layer) and, where ``by_group``, each group
    scored quantized alone (where ``alone``) and left alone in float: a run over the data each."""
    every = list(evaluator.layers)
    layers = every if layers is None else layers
    groups: dict[str, list[str]] = {}
    for layer in every if by_group else ():
        groups.setdefault(group_of(layer), []).append(layer)
    quantized = evaluator.score(())
    runs = (2 if alone else 1) * (len(layers) + len(groups))
    progress(f"scoring {len(layers)} layers and {len(groups)} groups on {len(evaluator.data)} held-out "
             f"samples ({runs} runs)")

    def entry(name: str, members: list[str]) -> Entry:
        others = [layer for layer in every if layer not in members]
        return Entry(name, group_of(members[0]), len(members),
                     evaluator.score(others) if alone else None, evaluator.score(members))

    group_entries = [entry(name, members) for name, members in groups.items()]
    layer_entries = []
    for i, layer in enumerate(layers, 1):
        layer_entries.append(entry(layer, [layer]))
        if i % 10 == 0:
            progress(f"  {i}/{len(layers)} layers")
    metric = "agreement" if evaluator.data.labels is None else "top-1"
    return Sensitivity(metric, len(evaluator.data), evaluator.float, quantized, layer_entries, group_entries)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What the accuracy budget chose: the layers kept in float and the score with them."""

    max_drop: float
    floating: list[str]
    drop: float
    score: Score
    runs: int  # passes of the fake-quantized model (of each placement) over the held-out data
    placements: dict[str, float] | None = None  # each int8 placement's drop, where fitted on several

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_budget(max_drop: float, max_float: int | None) -> None:
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 <= max_drop < 100:
        raise DenseNetTRTError(f"max_drop must be a number of points from 0 to 100, got {max_drop!r}")
    if max_float is not None and (isinstance(max_float, bool) or not isinstance(max_float, int) or max_float < 0):
        raise DenseNetTRTError(f"max_float must be a whole number of layers, 0 or more, got {max_float!r}")


def fit_budget(evaluator: Evaluator | Worst, max_drop: float, max_float: int | None = None,
               progress: Progress = lambda message: None) -> Budget:
    """The fewest layers kept in float, most sensitive first, for which the drop on the held-out
    data is at most ``max_drop`` points; at most ``max_float`` of them (default: half the
    quantized layers). One line, and nothing kept, where no such set exists."""
    check_budget(max_drop, max_float)
    limit = len(evaluator.layers) // 2 if max_float is None else max_float
    result = evaluator.score(())
    progress(f"all {len(evaluator.layers)} layers quantized: {evaluator.drop(result):.2f} points below float")
    if evaluator.drop(result) <= max_drop:
        return Budget(max_drop, [], evaluator.drop(result), result, evaluator.runs)
    order = [e.name for e in measure(evaluator, alone=False, by_group=False, progress=progress).ranked()] if limit else []
    floating: list[str] = []
    for layer in order[:limit]:
        floating.append(layer)
        result = evaluator.score(floating)
        progress(f"  {len(floating)} in float (+{layer}): {evaluator.drop(result):.2f} points below float")
        if evaluator.drop(result) <= max_drop:
            break
    else:
        raise DenseNetTRTError(
            f"no set of at most {limit} layers kept in float holds the held-out drop within {max_drop:g} points "
            f"({evaluator.drop(result):.2f} with the {len(floating)} most sensitive in float{_by_placement(evaluator, floating)}); "
            "nothing kept: try "
            "another method=NAME, more calibration data, or a larger max_drop=POINTS or max_float=N"
        )
    for layer in reversed(floating[:-1]):  # drop what the later choices made unnecessary
        trial = [name for name in floating if name != layer]
        again = evaluator.score(trial)
        if evaluator.drop(again) <= max_drop:
            floating, result = trial, again
    return Budget(max_drop, floating, evaluator.drop(result), result, evaluator.runs)


def _by_placement(evaluator: Evaluator | Worst, floating: list[str]) -> str:
    """Where ``evaluator`` scores several placements: each one's drop with ``floating`` in float."""
    if not isinstance(evaluator, Worst):
        return ""
    return "; by placement: " + ", ".join(f"{name} {drop:.2f}" for name, drop in evaluator.drops(floating).items())


def calibrated_models(calibration: Calibration, weights: str | os.PathLike | None = None) -> tuple[nn.Module, nn.Module]:
    """The float model ``calibration`` was made for (its checkpoint, at ``weights`` where it has
    moved) and its fake-quantized copy; a checkpoint other than the calibrated one (another
    architecture, other weights, any for random weights) is refused as a build refuses it."""
    record = calibration.report["model"]
    checkpoint = None if weights is None else Path(weights)
    if checkpoint is not None and checkpoint.is_file() and os.access(checkpoint, os.R_OK):
        # Before loading it: a checkpoint of another architecture is not the calibrated one either.
        calibration.check_weights({"weights": {"file": str(checkpoint), "sha256": sha256_file(checkpoint)},
                                   "seed": record["seed"]})
    if checkpoint is None and record["weights"] is not None:
        checkpoint = Path(record["weights"]["file"])
        if not checkpoint.is_file():
            raise DenseNetTRTError(
                f"{calibration.path} was made with {checkpoint}, which is not there: pass the checkpoint's "
                "path as weights=PATH"
            )
    net = reference_model(record["name"], checkpoint, record["num_classes"], record["seed"], record["overrides"])
    calibration.check_model(model_record(record["name"], net, checkpoint, record["seed"], record["overrides"]),
                            calibration.report["image_size"], net.in_channels)
    return net, calibration.quantized_model(net)


def sensitivity(
    calibration: str | os.PathLike,
    eval_data: str | os.PathLike | Dataset,
    *,
    weights: str | os.PathLike | None = None,
    eval_samples: int | None = None,
    seed: int = SENSITIVITY_SEED,
    batch_size: int = SENSITIVITY_BATCH_SIZE,
    layers: list[str] | None = None,
    preprocess: Preprocessing | None = None,
    progress: Progress = lambda message: None,
) -> Sensitivity:
    """Rank the quantized layers of the calibration folder ``calibration`` (and its groups:
    stem, dense blocks, transitions, classifier) by what quantizing each alone costs and what
    leaving each alone in float recovers, on ``eval_data`` (held out; ``eval_samples`` of it
    drawn with ``seed``, default all). ``layers``: globs over layer names (default every one)."""
    cal = load_calibration(calibration)
    net, quantized = calibrated_models(cal, weights)
    chosen = None
    if layers:
        names = list(quantized_layers(quantized))
        chosen = [name for name in names if any(fnmatch.fnmatchcase(name, glob) for glob in layers)]
        if not chosen:
            raise DenseNetTRTError(f"layers={','.join(layers)} matches no quantized layer of {cal.path}; "
                                   f"they are named like {names[0]}")
    data = eval_data
    if not isinstance(data, Dataset):
        steps = preprocess or cal.preprocessing or preprocessing(get_model_info(cal.report["model"]["name"]).family,
                                                                 cal.report["image_size"])
        progress(f"reading evaluation data {eval_data}")
        data = load_data(eval_data, preprocess=steps, samples=eval_samples, seed=seed, progress=progress)
    data.check_for_model(cal.report["in_channels"], cal.report["image_size"], "evaluation data")
    data.check_labels(net.classifier.out_features, "evaluation data")
    return measure(Evaluator(net, quantized, data, batch_size), chosen, progress=progress)
