"""The documents the tool writes and reads back, and the typed engine record.

Three versioned JSON documents: the engine manifest (``manifest.json`` beside every engine),
the calibration report (``report.json`` of a calibration folder) and the profile report. One
reader and one writer serve all three: the reader refuses what is not JSON, bare ``NaN`` or
``Infinity``, and another schema or version; the writer refuses to write a value that is not
finite and writes whole or not at all.

The engine manifest is read into ``EngineManifest``, a tree of frozen dataclasses checked field
by field (presence, type, allowed values, finite numbers, batch range order): every reader of
an engine (load, info, verify, predict, profile, export-triton, the backends) takes that object,
never a raw dict. A bad field is one ``DenseNetTRTError`` naming the field and the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

from .artifact import atomic_path
from ..model.data import IMAGE_SUFFIXES, Preprocessing
from ..errors import DenseNetTRTError
from ..reading import read_text
from ..machine import MANIFEST_MAX_THREADS
from .spec import DEVICES, MAX_SEED, BatchRange, Precision
from .verify import Tolerance


@dataclasses.dataclass(frozen=True)
class Document:
    """A kind of versioned document: its schema name, version, and what to do about a bad one."""

    schema: str
    version: int
    fix: str
    reads: tuple[int, ...] = ()  # older versions still read


# Engine version 2: the manifest carries a digest of its own content, and input/output dtypes
# are the artifact's graph's. Version 3: ``tf32`` (whether float32 layers may round to TF32),
# which decides the gate tolerance. Version 4: ``calibration.synthetic`` (an int8 engine from a
# calibration on random images); version 3 manifests are still read, with it null (not recorded).
# Version 5: ``labels``, the class names where they are known; versions 3 and 4 are read with it null.
ENGINE = Document("densenet-trt/engine", 5, "rebuild the engine", reads=(3, 4))
# Calibration version 2: ONNX Runtime's own ranges (onnxruntime_ranges.json) and the gate and
# accuracy of its placement (``onnxruntime``), which onnxruntime int8 engines are built from.
# Version 3: the report carries a digest of its own content, as the engine manifest does.
CALIBRATION = Document("densenet-trt/calibration", 3, "calibrate again")
# Profile version 2: latency and measured throughput rows, one eager baseline per model and device,
# device memory per runner, the slowest layers.
PROFILE = Document("densenet-trt/profile", 2, "profile again")


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def read_document(path: str | os.PathLike, kind: Document) -> dict[str, Any]:
    """The body of the ``kind`` document at ``path``, after checking that it is JSON (without
    NaN or Infinity) of that schema and version."""
    path = Path(path)
    text = read_text(path, f"{kind.schema.split('/')[-1]} document")
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except ValueError as e:
        raise DenseNetTRTError(f"{path} is corrupt ({e}); {kind.fix}") from None
    except RecursionError:  # the decoder recurses once per nested array or object
        raise DenseNetTRTError(f"{path} is corrupt (JSON nested too deeply to read); {kind.fix}") from None
    if not isinstance(data, dict) or data.get("schema") != kind.schema:
        raise DenseNetTRTError(f"{path} is not a {kind.schema} document; {kind.fix}")
    if data.get("schema_version") != kind.version and data.get("schema_version") not in kind.reads:
        raise DenseNetTRTError(
            f"{path} has schema version {data.get('schema_version')!r}; this densenet-trt reads "
            f"version {kind.version}: {kind.fix}"
        )
    return data


def dumps(body: dict[str, Any], kind: Document) -> str:
    """``body`` as the text of a ``kind`` document (schema and version first)."""
    document = {"schema": kind.schema, "schema_version": kind.version, **body}
    try:
        return json.dumps(document, indent=2, allow_nan=False, default=_plain) + "\n"
    except ValueError as e:
        raise DenseNetTRTError(f"refusing to write a {kind.schema} document: {e} (a value is not finite)") from None


def write_document(path: str | os.PathLike, body: dict[str, Any], kind: Document, force: bool = False) -> None:
    """Write ``body`` as a ``kind`` document at ``path`` (``-``: standard output), whole or not
    at all; an existing file only with ``force``."""
    text = dumps(body, kind)
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _plain(value: Any) -> Any:
    """JSON for the typed values of a record."""
    if dataclasses.is_dataclass(value):
        return to_json(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# ---------------------------------------------------------------------------------------------
# The typed engine record
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeightsRecord:
    file: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """Enough to make the model again: preset, configuration, weights or random seed."""

    name: str
    config: dict[str, Any]
    num_classes: int
    weights: WeightsRecord | None
    seed: int
    overrides: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """An input or output of the engine's graph: name, dtype and shape ("batch" where dynamic)."""

    name: str
    dtype: str
    shape: list[Any]


@dataclasses.dataclass(frozen=True)
class GpuRecord:
    name: str
    compute_capability: str
    driver: str | None
    cuda: str | None

    @property
    def capability(self) -> tuple[int, int]:
        major, minor = (int(part) for part in self.compute_capability.split("."))
        return major, minor


@dataclasses.dataclass(frozen=True)
class DeviceRecord:
    """The machine an engine was built for."""

    type: str
    platform: str  # operating system and CPU architecture, e.g. Linux-x86_64
    cpu: str
    cpu_count: int | None
    gpu: GpuRecord | None


# What build, info and profile say of an int8 engine whose calibration was made from random images.
SYNTHETIC_CALIBRATION = "synthetic calibration (random images): not fit for accuracy"


@dataclasses.dataclass(frozen=True)
class CalibrationRecord:
    """The calibration an int8 engine came from."""

    path: str
    report_sha256: str
    method: str
    exclude: list[str]
    data_sha256: str
    synthetic: bool | None  # calibrated on random images: not fit for accuracy; None: not recorded


@dataclasses.dataclass(frozen=True)
class BuildRecord:
    seconds: float
    time_utc: str


@dataclasses.dataclass(frozen=True)
class AccuracyRecord:
    """The accuracy gate's verdict: ``verified`` False with the ``reason`` when it was skipped;
    else the reference, tolerance, per-batch results and, for int8, the same against the
    fake-quantized model."""

    verified: bool
    reason: str | None
    reference: str | None
    tolerance: Tolerance | None
    passed: bool | None
    results: list[dict[str, Any]]
    vs_fake_quantized: dict[str, Any] | None

    @classmethod
    def skipped(cls, reason: str) -> AccuracyRecord:
        return cls(False, reason, None, None, None, [], None)


@dataclasses.dataclass(frozen=True)
class Int8SpeedRecord:
    """An int8 engine against the same backend's float32 engine, timed when it was built:
    the median milliseconds of ``calls`` interleaved calls each at batch ``batch``."""

    batch: int
    calls: int
    int8_ms: float
    float32_ms: float


@dataclasses.dataclass(frozen=True)
class EngineManifest:
    """What ``manifest.json`` says about an engine."""

    model: ModelRecord
    backend: str
    format: str
    precision: Precision
    tf32: bool  # float32 convolutions and matmuls may round their inputs to TF32 (allow_tf32)
    batch: BatchRange
    image_size: int
    in_channels: int
    input: TensorRecord
    output: TensorRecord
    threads: int | None
    preprocessing: Preprocessing | None
    calibration: CalibrationRecord | None
    device: DeviceRecord
    versions: dict[str, str]
    backend_settings: dict[str, Any]
    build: BuildRecord
    files: dict[str, str]
    main_file: str
    accuracy: AccuracyRecord
    int8_speed: Int8SpeedRecord | None = None  # int8 engines: against float32, timed at the build
    labels: list[str] | None = None  # class names where known (torchvision's checkpoints: ImageNet's)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str | os.PathLike = "manifest") -> EngineManifest:
        """The record in ``data`` (a manifest's body), checked field by field; ``source``
        names the file in errors."""
        manifest = parse(cls, data, str(source))
        where = _Where(str(source), "", ENGINE.fix)
        if manifest.device.type == "cuda" and manifest.device.gpu is None:
            where.fail("device.gpu", "is null for a cuda engine")
        if manifest.main_file not in manifest.files:
            where.fail("main_file", f"{manifest.main_file!r} is not among the files")
        if manifest.labels is not None and len(manifest.labels) != manifest.model.num_classes:
            where.fail("labels", f"has {len(manifest.labels)} names for {manifest.model.num_classes} classes")
        return manifest

    def gate_tolerance(self) -> Tolerance:
        """The tolerance of a float engine's accuracy gate: the one recorded when it was built,
        which may be no looser than its precision's (TF32's where ``tf32``): an edit that
        weakens it is refused (the digest alone does not stop a deliberate one). Int8 engines
        meet their calibration's instead (``calibration.engine_calibration``)."""
        allowed = self.precision.gate_tolerance(self.tf32)
        recorded = self.accuracy.tolerance
        if recorded is None:
            return allowed
        wider = recorded.loosened(allowed)
        if wider:
            raise DenseNetTRTError(
                f"field accuracy.tolerance ({recorded}) is looser than the {self.precision}"
                f"{' TF32' if self.tf32 else ''} gate's ({allowed}) in {', '.join(wider)}: the manifest "
                f"was edited; {ENGINE.fix}"
            )
        return recorded


MANIFEST = "manifest.json"


def _not_an_engine(path: Path, folder: Path) -> str:
    """Why ``path``, whose ``folder`` has no manifest, is not an engine: an image (an engine
    and its images given the other way round), a folder of engines, or something else."""
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return f"{path} looks like an image, not an engine: give an engine's folder (the one `densenet-trt build` wrote)"
    inside = sorted(str(p) for p in folder.iterdir() if (p / MANIFEST).is_file()) if path.is_dir() else []
    if inside:
        more = f" and {len(inside) - 10} more" if len(inside) > 10 else ""
        return f"{path} is a folder of engines: give one of: {', '.join(inside[:10])}{more}"
    where = folder if path.is_dir() else f"{path} is a file and its folder {str(folder)!r}"
    return f"{where} has no {MANIFEST}: not an engine built by densenet-trt (give an engine's folder, or rebuild it)"


def read_manifest(path: str | os.PathLike) -> tuple[Path, EngineManifest]:
    """The engine folder and typed manifest for ``path``: the folder, its manifest or any file
    in it."""
    path = Path(path)
    if not path.exists():
        raise DenseNetTRTError(f"engine {str(path)!r} does not exist")
    folder = path if path.is_dir() else path.parent
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DenseNetTRTError(_not_an_engine(path, folder))
    data = read_document(manifest_path, ENGINE)
    body = document_body(data)
    if data["schema_version"] == 3 and isinstance(body.get("calibration"), dict):
        body["calibration"] = {**body["calibration"], "synthetic": None}
    if data["schema_version"] < 5:
        body["labels"] = None
    manifest = EngineManifest.from_json(body, manifest_path)
    check_digest(data, manifest_path, ENGINE, "the build")
    return folder, manifest


DIGEST = "digest"


def digest(body: dict[str, Any]) -> str:
    """sha256 of a document's body in canonical JSON: what catches an accidental edit (not a
    signature: anyone can compute it again)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def document_body(data: dict[str, Any]) -> dict[str, Any]:
    """A document without its schema, version and digest: what the digest is over."""
    return {k: v for k, v in data.items() if k not in ("schema", "schema_version", DIGEST)}


def check_digest(data: dict[str, Any], path: str | os.PathLike, kind: Document, made: str) -> None:
    """Refuse the ``kind`` document ``data`` read from ``path`` where its digest is missing or
    does not match its body: it was changed after ``made`` (the build, calibration)."""
    if DIGEST not in data:
        raise DenseNetTRTError(f"{path}: field {DIGEST} is missing; {kind.fix}")
    if data[DIGEST] != digest(document_body(data)):
        raise DenseNetTRTError(
            f"{path} was changed after {made} (its {DIGEST} does not match its content); {kind.fix}"
        )


def write_manifest(folder: Path, manifest: EngineManifest) -> None:
    body = manifest.to_json()
    write_document(folder / MANIFEST, {**body, DIGEST: digest(body)}, ENGINE)


def parse(cls: type, data: Any, source: str, fix: str = ENGINE.fix) -> Any:
    """``data`` (JSON values) as the record type ``cls``, checked field by field; ``source``
    names where it came from in errors, ``fix`` what to do about a bad field."""
    return _convert(cls, data, _Where(source, "", fix))


# Allowed values of string fields, by dotted field name. The backend is any name: loading an
# engine of one that is not registered is refused by ``backends.get_backend``.
_CHOICES: dict[str, tuple[str, ...]] = {"device.type": DEVICES}
# Integer fields and their least and largest value.
_MINIMUM: dict[str, int] = {
    "image_size": 1, "in_channels": 1, "threads": 1, "model.num_classes": 1, "device.cpu_count": 1,
    "int8_speed.batch": 1, "int8_speed.calls": 1, "model.seed": 0,
}
_MAXIMUM: dict[str, int] = {"threads": MANIFEST_MAX_THREADS, "model.seed": MAX_SEED}


@dataclasses.dataclass(frozen=True)
class _Where:
    source: str
    field: str
    fix: str

    def at(self, name: str | int) -> _Where:
        if isinstance(name, int):
            return _Where(self.source, f"{self.field}[{name}]", self.fix)
        return _Where(self.source, f"{self.field}.{name}" if self.field else name, self.fix)

    def fail(self, field: str, problem: str) -> typing.NoReturn:
        raise DenseNetTRTError(f"{self.source}: field {field} {problem}; {self.fix}")

    def bad(self, problem: str) -> typing.NoReturn:
        self.fail(self.field, problem)


def _convert(hint: Any, value: Any, where: _Where) -> Any:
    """``value`` (parsed JSON) as the type ``hint``, or an error naming the field."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(args[0], value, where)
    if value is None:
        where.bad("is null")
    if origin is list:
        if not isinstance(value, list):
            where.bad(f"must be a list, not {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, where.at(i)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            where.bad(f"must be an object, not {type(value).__name__}")
        _, item = typing.get_args(hint)
        return {k: _convert(item, v, where.at(k)) for k, v in value.items()}
    if hint in (Precision, BatchRange, Preprocessing):
        return _typed_value(hint, value, where)
    if dataclasses.is_dataclass(hint):
        return _record(hint, value, where)
    return _scalar(hint, value, where)


def _record(cls: type, value: Any, where: _Where) -> Any:
    if not isinstance(value, dict):
        where.bad(f"must be an object, not {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {}
    for field in dataclasses.fields(cls):
        if field.name not in value:
            where.at(field.name).bad("is missing")
        fields[field.name] = _convert(hints[field.name], value[field.name], where.at(field.name))
    return cls(**fields)


def _scalar(hint: Any, value: Any, where: _Where) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            where.bad(f"must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            where.bad(f"must be an integer, not {value!r}")
        if value < _MINIMUM.get(where.field, -math.inf):
            where.bad(f"must be at least {_MINIMUM[where.field]}, not {value}")
        if value > _MAXIMUM.get(where.field, math.inf):
            where.bad(f"must be at most {_MAXIMUM[where.field]}, not {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            where.bad(f"must be a finite number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            where.bad(f"must be a string, not {value!r}")
        if where.field in _CHOICES and value not in _CHOICES[where.field]:
            where.bad(f"is {value!r}, not one of {', '.join(_CHOICES[where.field])}")
        return value
    raise TypeError(f"no conversion for {hint}")


def _typed_value(hint: Any, value: Any, where: _Where) -> Any:
    """Precision, BatchRange and Preprocessing: their own parsers check them."""
    try:
        if hint is Precision:
            return Precision.parse(value)
        if hint is BatchRange:
            if not isinstance(value, dict) or set(value) != {"min", "opt", "max"}:
                raise DenseNetTRTError("must be an object with min, opt and max")
            return BatchRange.from_dict(value)
        if hint is Preprocessing:
            return Preprocessing.from_dict(value)
    except (DenseNetTRTError, KeyError, TypeError, ValueError) as e:
        where.bad(f"is invalid ({e})")


def to_json(record: Any) -> Any:
    """A record as JSON values: the inverse of ``from_json``."""
    if isinstance(record, Precision):
        return record.value
    if isinstance(record, (BatchRange, Preprocessing)):
        return record.as_dict()
    if dataclasses.is_dataclass(record):
        return {f.name: to_json(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, (list, tuple)):
        return [to_json(v) for v in record]
    if isinstance(record, dict):
        return {k: to_json(v) for k, v in record.items()}
    return record
