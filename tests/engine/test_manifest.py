"""The typed engine record: every field a reader reads is checked when the manifest is read, so
an edited or damaged manifest is one line naming the field, from every command that reads one."""

import dataclasses
import json
import shutil
import typing

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from densenet_trt import DenseNetTRTError, create_model
from densenet_trt.engine.build import build
from densenet_trt.cli import main
from densenet_trt.engine.load import load
from densenet_trt.model.data import Preprocessing
from densenet_trt.engine.manifest import (
    ENGINE,
    MANIFEST,
    EngineManifest,
    read_document,
    read_manifest,
    write_document,
)
from densenet_trt.engine.spec import BatchRange, Precision

SMALL = {"block_config": (2, 2, 2)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A small engine built from a checkpoint, so that the weights record is filled in."""
    folder = tmp_path_factory.mktemp("engines")
    torch.save(create_model("densenet_bc100_k12", **SMALL).state_dict(), folder / "w.pth")
    return build("densenet_bc100_k12", backend="torchscript", batch="1:2:2", overrides=SMALL,  # the fastest build
                 weights=folder / "w.pth", output=folder)


def record_fields(cls=EngineManifest, prefix=""):
    """Dotted paths of every field of the record tree, nested records included."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path = f"{prefix}{field.name}"
        yield path
        hint = hints[field.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if dataclasses.is_dataclass(inner[0]) and inner[0] not in (BatchRange, Preprocessing):
            yield from record_fields(inner[0], f"{path}.")


FIELDS = list(record_fields())


def test_a_manifest_reads_back_as_the_record_it_was_written_from(engine):
    folder, manifest = read_manifest(engine.path)
    assert manifest == engine.manifest
    assert manifest.precision is Precision.FP32 and manifest.batch == BatchRange(1, 2, 2)
    assert EngineManifest.from_json(manifest.to_json()) == manifest


def test_the_record_tree_covers_what_readers_read():
    # Spot checks of the field list the parametrised test below walks.
    for field in ("model.num_classes", "batch", "device.type", "input.dtype", "accuracy.verified", "files"):
        assert field in FIELDS


def _edited(engine, tmp_path, path: str, change) -> str:
    """A copy of the engine whose manifest has ``change`` applied at ``path``; returns its folder."""
    folder = tmp_path / "edited"
    shutil.copytree(engine.path, folder)
    data = json.loads((folder / MANIFEST).read_text())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if node is None:
        pytest.skip(f"{'.'.join(parents)} is null in this engine's manifest")
    change(node, last)
    (folder / MANIFEST).write_text(json.dumps(data))
    return str(folder)


def _wrong_type(node, key):
    value = node[key]
    node[key] = [1, 2] if value is None else ["a", "list"] if isinstance(value, str) else "not-a-valid-value"


def _remove(node, key):
    del node[key]


@pytest.mark.parametrize("change", [_remove, _wrong_type], ids=["removed", "wrong-type"])
@pytest.mark.parametrize("field", FIELDS)
def test_a_bad_field_is_one_line_naming_it_from_every_command(engine, tmp_path, field, change):
    folder = _edited(engine, tmp_path, field, change)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    commands = [
        ["info", folder], ["verify", folder], ["predict", folder, str(image)],
        ["profile", folder, "--iterations", "1", "-q"], ["export-triton", folder, "--repository", str(tmp_path / "r")],
    ]
    for args in commands:
        result = CliRunner().invoke(main, args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1, (args, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert f"field {field}" in lines[0], lines[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text, problem", [
    ("{", "corrupt"), ('{"schema": "densenet-trt/engine", "schema_version": 5, "x": NaN}', "NaN is not JSON"),
    ('{"schema": "other", "schema_version": 1}', "not a densenet-trt/engine document"),
    ('{"schema": "densenet-trt/engine", "schema_version": 9}', "schema version 9"),
])
def test_documents_that_are_not_json_or_of_another_schema_are_refused(tmp_path, text, problem):
    path = tmp_path / "doc.json"
    path.write_text(text)
    with pytest.raises(DenseNetTRTError, match=problem):
        read_document(path, ENGINE)


def test_no_document_is_written_with_a_value_that_is_not_finite(tmp_path):
    path = tmp_path / "doc.json"
    with pytest.raises(DenseNetTRTError, match="not finite"):
        write_document(path, {"value": float("nan")}, ENGINE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (None, "field main_file 'model.ts' is not among the files"),
    ({"extra.bin": "0" * 64}, r"lists files \['extra.bin', 'model.ts'\].*but a torchscript torchscript engine is model.ts"),
])
def test_the_files_an_engine_must_have_come_from_its_backend_not_the_manifest(
    engine, tmp_path, extra, message, edit_manifest
):
    """An edited file list (even with its digest made again) must not skip a checksum: a corrupt
    artifact would then load."""
    files = {} if extra is None else {**engine.manifest.files, **extra}
    folder = shutil.copytree(engine.path, tmp_path / "edited")
    edit_manifest(folder, lambda m: m.update(files=files))
    (folder / "model.ts").write_bytes(b"corrupt")
    with pytest.raises(DenseNetTRTError, match=message):
        load(folder)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(precision="bf16"), "was changed after the build"),
    (lambda m: m["batch"].update(max=64), "was changed after the build"),
    (lambda m: m.update(threads=1), "was changed after the build"),
    (lambda m: m.pop("digest"), "field digest is missing"),
])
def test_an_edited_manifest_is_caught_by_its_digest(engine, tmp_path, change, message):
    """Edits that keep every field valid, which would weaken the checks (a looser tolerance, a
    batch the engine was not built for), are caught by the manifest's digest of itself."""
    folder = shutil.copytree(engine.path, tmp_path / "edited")
    data = json.loads((folder / MANIFEST).read_text())
    change(data)
    (folder / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(DenseNetTRTError, match=message):
        load(folder)
    result = CliRunner().invoke(main, ["info", str(folder)])
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_compiled_cpu_code_from_another_platform_or_torch_is_refused(engine):
    """AOTInductor packages are compiled code: another OS or CPU architecture, or another torch,
    cannot run them (an ONNX file can: it is not checked)."""
    from densenet_trt.backends import BACKENDS

    m = engine.manifest
    inductor = dataclasses.replace(m, backend="inductor", format="aot-inductor")
    BACKENDS["inductor"].check_compatible(inductor)
    elsewhere = dataclasses.replace(inductor, device=dataclasses.replace(m.device, platform="Other-arch"))
    with pytest.raises(DenseNetTRTError, match="was built for Other-arch; this machine is"):
        BACKENDS["inductor"].check_compatible(elsewhere)
    older = dataclasses.replace(inductor, versions={**m.versions, "torch": "2.11.0"})
    with pytest.raises(DenseNetTRTError, match="built with torch 2.11.0"):
        BACKENDS["inductor"].check_compatible(older)
    onnx = dataclasses.replace(m, backend="onnxruntime", format="onnx", device=elsewhere.device)
    BACKENDS["onnxruntime"].check_compatible(onnx)
