"""A Triton Inference Server model repository from a built engine.

Writes ``REPOSITORY/NAME/config.pbtxt`` and ``REPOSITORY/NAME/1/<model file>``, the layout
Triton expects, with the platform or backend that runs the engine's format, the inputs and
outputs from the manifest, a max batch size within the built range, dynamic batching, an
instance group and the runner's parameters (its backend's ``TritonTarget``: the thread count,
and for OpenVINO max_batch_size 0 with a -1 batch dimension and the precision). Formats Triton
has no runner for (torch.export programs, AOTInductor packages), and engines a runner cannot
run at their precision, are refused with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

from ..engine.artifact import atomic_dir, check_files, entry_path, writable_folder
from ..backends import BACKENDS, Backend, get_backend
from ..backends.base import TritonTarget, no_triton_runner
from ..defaults import TRITON_INSTANCES
from ..errors import DenseNetTRTError
from ..engine.manifest import EngineManifest, read_manifest
from ..engine.spec import Precision


# Triton's runners, the GPU's own first, each with what it serves in plain words: the order a
# refusal lists them in.
RUNNERS = (("tensorrt_plan", "TensorRT plans"), ("pytorch_libtorch", "TorchScript"), ("onnxruntime_onnx", "ONNX"),
           ("openvino", "OpenVINO IR"))


def _target(backend: Backend, fmt: str) -> TritonTarget | str:
    return backend.triton_target(fmt) if fmt in backend.formats else no_triton_runner(backend.name, fmt)


def triton_takes() -> list[str]:
    """What Triton serves, a phrase per runner in ``RUNNERS`` order, with the backends and
    formats that make it, asked of every registered backend: "ONNX (backend onnxruntime,
    format onnx)"."""
    makers: dict[str, tuple[list[str], list[str]]] = {}
    for backend in BACKENDS.values():
        for fmt in backend.formats:
            if isinstance(target := backend.triton_target(fmt), TritonTarget):
                backends, formats = makers.setdefault(target.setting[1], ([], []))
                backends += [backend.name] if backend.name not in backends else []
                formats += [fmt] if fmt not in formats else []
    plain = dict(RUNNERS)
    order = [runner for runner, _ in RUNNERS if runner in makers] + sorted(set(makers) - set(plain))
    phrases = []
    for runner in order:
        backends, formats = makers[runner]
        phrases.append(f"{plain.get(runner, runner)} (backend {' or '.join(backends)}, format {' or '.join(formats)})")
    return phrases


def triton_target(manifest: EngineManifest) -> TritonTarget:
    """How Triton runs the engine ``manifest`` describes (its backend says; a cuda engine's
    instances are KIND_GPU); an engine Triton has no runner for raises naming those it has."""
    target = _target(get_backend(manifest.backend), manifest.format)
    if isinstance(target, str):
        raise DenseNetTRTError(
            f"{target}; Triton serves {_listed(triton_takes())}: build one of those, e.g. backend=onnxruntime on "
            "a CPU or backend=tensorrt format=engine on an NVIDIA GPU"
        )
    if manifest.device.type == "cuda":
        target = dataclasses.replace(target, kind="KIND_GPU")
    return target


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# Triton's model name is the name of the model's folder in the repository, and the name in
# config.pbtxt "must match the name of the model repository directory containing the model"
# (Triton docs, user_guide/model_configuration.md, "Name, Platform and Backend"; the layout is
# user_guide/model_repository.md, "Repository Layout"). Triton documents no character set of its
# own; clients put the name in URLs (/v2/models/<name>/config) and on command lines
# (perf_analyzer -m <name>). So a name is one folder name of URL-safe characters (RFC 3986's
# unreserved ones but '~'): letters, digits, '_', '-' and '.', first a letter, digit or '_' (not
# '.', which hides the folder and makes '.' and '..'; not '-', which reads as an option), at most
# 200 characters (a file name's limit is 255, and the temporary folder written beside it while
# the entry is made adds 18).
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def check_model_name(name: str) -> str:
    """``name`` if Triton can serve a model of that name (see MODEL_NAME); else the error."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise DenseNetTRTError(
            f"model name {name!r} is not a Triton model name: use letters, digits, '_', '-' and "
            "'.', starting with a letter, digit or '_', at most 200 characters; e.g. "
            "model_name=densenet121"
        )
    return name


def pbtxt_string(text: str) -> str:
    """``text`` as a quoted string of protobuf's text format: backslash and double quote escaped,
    as are control characters (octal), so that no text can end the string early."""
    out = []
    for char in text:
        if char in ('\\', '"'):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def config_pbtxt(manifest: EngineManifest, model_name: str, max_batch_size: int, instances: int,
                 dynamic_batching: bool) -> str:
    """The model configuration, in Triton's protobuf text format; every string through
    ``pbtxt_string``."""
    target = triton_target(manifest)
    # The dtype the engine's graph takes, as the manifest records it.
    dtype = Precision.of_dtype(manifest.input.dtype).triton
    size, channels = manifest.image_size, manifest.in_channels
    key, value = target.setting
    batch = "" if target.batched else "-1, "
    lines = [
        f"name: {pbtxt_string(model_name)}",
        f"{key}: {pbtxt_string(value)}",
        f"max_batch_size: {max_batch_size if target.batched else 0}",
        "input [",
        f"  {{ name: {pbtxt_string(target.input_name)} data_type: {dtype} dims: [ {batch}{channels}, {size}, {size} ] }}",
        "]",
        "output [",
        f"  {{ name: {pbtxt_string(target.output_name)} data_type: {dtype} dims: [ {batch}{manifest.model.num_classes} ] }}",
        "]",
        f"instance_group [ {{ count: {instances} kind: {target.kind} }} ]",
    ]
    lines += [f"parameters {{ key: {pbtxt_string(k)} value: {{ string_value: {pbtxt_string(v)} }} }}"
              for k, v in target.parameters(manifest).items()]
    if dynamic_batching and target.batched:
        lines.append("dynamic_batching { max_queue_delay_microseconds: 100 }")
    return "\n".join(lines) + "\n"


def summary(manifest: EngineManifest) -> str:
    """What Triton runs for the engine ``manifest`` describes: its runner, precision, the config's
    parameters and how it batches; raises DenseNetTRTError where the runner cannot run the engine
    as it was verified (the reason from its backend)."""
    target = triton_target(manifest)
    parameters = target.parameters(manifest)
    text = f"Triton's {target.setting[1]} runs it in {manifest.precision}"
    if parameters:
        text += "; parameters " + ", ".join(f"{k}={v}" for k, v in parameters.items())
    if not target.batched:
        text += (f"; max_batch_size 0, the batch a -1 dimension (this runner takes only batch max_batch_size "
                 f"otherwise), so Triton does not batch requests: send batches of {manifest.batch.min} to "
                 f"{manifest.batch.max}")
    return text


def export_triton(
    engine: str | os.PathLike,
    repository: str | os.PathLike,
    *,
    model_name: str | None = None,
    max_batch_size: int | None = None,
    instances: int = TRITON_INSTANCES,
    dynamic_batching: bool = True,
    force: bool = False,
) -> Path:
    """Write the engine at ``engine`` into the Triton model repository ``repository`` as
    ``model_name`` (default: the engine folder's name; a name Triton can serve, see
    ``MODEL_NAME``); returns the model's folder. The repository is checked writable first."""
    folder, manifest = read_manifest(engine)
    check_files(folder, manifest.files, "rebuild the engine", "engine file")
    target = triton_target(manifest)
    target.parameters(manifest)  # refuses an engine its runner cannot run as verified, before anything is written
    batch = manifest.batch
    if batch.min != 1:
        raise DenseNetTRTError(
            f"{folder.name} takes batches from {batch.min}, but Triton sends any size from 1 to "
            "max_batch_size; rebuild with batch=1:OPT:MAX"
        )
    max_batch_size = batch.max if max_batch_size is None else batch.check(max_batch_size, "max batch size")
    if not isinstance(instances, int) or instances < 1:
        raise DenseNetTRTError(f"instances must be a positive integer, got {instances!r}")
    repository = Path(repository)
    name = check_model_name(folder.name if model_name is None else model_name)
    target_dir = entry_path(repository, name)
    writable_folder(repository, "give another repository=DIR")
    if target_dir.exists() and not force:
        raise DenseNetTRTError(f"{target_dir} exists; pass force=True to replace it")
    with atomic_dir(target_dir, force) as tmp:
        (tmp / "config.pbtxt").write_text(
            config_pbtxt(manifest, name, max_batch_size, instances, dynamic_batching), encoding="utf-8"
        )
        (tmp / "1").mkdir()
        for source, dest in target.files.items():
            shutil.copyfile(folder / source, tmp / "1" / dest)  # new files: the umask's permissions
    return target_dir
