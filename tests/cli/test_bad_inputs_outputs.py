"""The output rule (issue 25, its data-loss cases): every file a command writes goes through
``artifact.check_outputs`` / ``atomic_path`` / ``atomic_dir``. Never over an existing file without
--force, never over the command's own inputs or the engine it reads (even with --force), never
through a symbolic link or onto a special file (``-`` is standard output), two outputs of one
command never the same file, atomic, and with the umask's permissions."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from densenet_trt.engine.artifact import MAX_NAME_BYTES, atomic_dir, atomic_path
from densenet_trt.cli import main
from densenet_trt.cli.options import Command
from densenet_trt.errors import DenseNetTRTError
from helpers import mounted
from helpers import umask
from test_bad_inputs import refused, snapshot
from test_bad_inputs_commands import ENGINE, base, work  # noqa: F401 - fixtures

PROFILE = ["profile", ENGINE, "--iterations", "2", "--warmup-iterations", "0", "--gap", "0", "-q", "--vs", "none"]
SENSITIVITY = ["sensitivity", "calibration/c", "--eval-data", "data.npz", "--eval-samples", "8", "-q"]
EXPORT = ["export", "--model", "densenet_bc40_k12", "-q", "--format", "onnx"]

# Refused with and without --force: the command's inputs, links, special files, one file twice.
ALWAYS = {
    "profile csv over the engine's model": (PROFILE + ["--csv", f"{ENGINE}/model.onnx"], "an input of this command"),
    "profile json over the engine's manifest": (PROFILE + ["--json", f"{ENGINE}/manifest.json"],
                                                "an input of this command"),
    "profile json through /dev/stdout": (PROFILE + ["--json", "/dev/stdout"], "is a symbolic link"),
    "profile json onto a device": (PROFILE + ["--json", "/dev/null"], "is not a regular file"),
    "profile json and csv to one file": (PROFILE + ["--json", "r.out", "--csv", "r.out"], "name the same file"),
    "profile json and csv to one file by two names": (PROFILE + ["--json", "r.out", "--csv", "./r.out"],
                                                      "name the same file"),
    "profile two reports to standard output": (PROFILE + ["--json", "-", "--markdown", "-"], "name the same file"),
    "sensitivity json over its eval data": (SENSITIVITY + ["--json", "data.npz"], "an input of this command"),
    "sensitivity plot over its calibration": (SENSITIVITY + ["--plot", "calibration/c/report.json"],
                                              "an input of this command"),
    "export through a dangling symlink": (EXPORT + ["-o", "dangling.onnx"], "is a symbolic link"),
    "export through a symlink to a file": (EXPORT + ["-o", "link.txt"], "is a symbolic link"),
    "export over its checkpoint": (EXPORT + ["--weights", "other.pth", "-o", "other.pth"], "an input of this command"),
    "export to a name ending in /": (EXPORT + ["-o", "newdir/"], "ends in '/'"),
    "export to an empty name": (EXPORT + ["-o", ""], "output file name is empty"),
    "export into a folder": (EXPORT + ["-o", "images"], "is a folder"),
}
# Refused without --force (a file that exists), or refused as they are.
REFUSED = {
    "profile markdown over the user's notes": (PROFILE + ["--markdown", "keep.txt"], "keep.txt exists; pass --force"),
    "profile plot over the user's photo": (PROFILE + ["--plot", "photo.png"], "photo.png exists; pass --force"),
    "sensitivity json over a file": (SENSITIVITY + ["--json", "keep.txt"], "keep.txt exists; pass --force"),
    "profile an engine that is a file": (["profile", "keep.txt", "-q"], "keep.txt is a file"),
    "build a name too long for the file system": (["build", "--model", "densenet_bc40_k12", "--backend", "torchscript",
                                                   "-q", "--name", "n" * 256], "bytes long"),
}


@pytest.fixture
def outputs(work):
    """``work`` with the files these cases aim at."""
    (work / "keep.txt").write_text("the user's notes")
    (work / "photo.png").write_bytes(b"\x89PNG the user's photo")
    (work / "data.npz").write_bytes(b"the evaluation data")
    (work / "calibration" / "c").mkdir(parents=True)
    (work / "calibration" / "c" / "report.json").write_text("{}")
    (work / "dangling.onnx").symlink_to("nowhere.onnx")
    (work / "link.txt").symlink_to("keep.txt")
    return work


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["", "force"])
@pytest.mark.parametrize("args, message", list(ALWAYS.values()), ids=list(ALWAYS))
def test_refused_whatever_force_says(outputs, args, message, force):
    refused(args + force, outputs, message)
    assert os.path.islink("/dev/stdout")


@pytest.mark.parametrize("args, message", list(REFUSED.values()), ids=list(REFUSED))
def test_refused(outputs, args, message):
    refused(args, outputs, message)


def test_profile_force_replaces_a_report_and_dash_is_standard_output(outputs, monkeypatch):
    monkeypatch.chdir(outputs)
    result = CliRunner().invoke(main, PROFILE + ["--markdown", "keep.txt", "--json", "-", "--force"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema"] == "densenet-trt/profile"  # stdout: the JSON alone
    assert "| batch" in result.stderr  # the tables went to stderr
    assert (outputs / "keep.txt").read_text().startswith("# densenet-trt profile")


def test_every_command_checks_its_outputs():
    assert all(isinstance(command, Command) for command in main.commands.values())


# --- atomic: a file that appears while the command runs is never replaced ---------------------

def test_a_file_made_while_a_writer_runs_is_kept(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(DenseNetTRTError, match="appeared while this command ran"), atomic_path(target) as tmp:
        tmp.write_text("ours")
        target.write_text("another program's")
    assert target.read_text() == "another program's"
    assert os.listdir(tmp_path) == ["x.txt"]
    with atomic_path(target, force=True) as tmp:
        tmp.write_text("ours")
    assert target.read_text() == "ours"


def test_a_folder_made_while_a_writer_runs_is_kept(tmp_path):
    target = tmp_path / "engine"
    with pytest.raises(DenseNetTRTError, match="exists; pass force=True"), atomic_dir(target) as tmp:
        (tmp / "model.onnx").write_text("ours")
        target.mkdir()  # empty: a plain rename would have replaced it
    assert os.listdir(target) == [] and os.listdir(tmp_path) == ["engine"]


def test_export_keeps_a_file_another_program_made_during_the_export(tmp_path):
    from densenet_trt.engine.export import export_model
    from densenet_trt.model.registry import create_model

    target = tmp_path / "x.ts"

    def meanwhile(line):
        if line.startswith("checking"):
            target.write_text("another program's")

    with pytest.raises(DenseNetTRTError, match="appeared while this command ran"):
        export_model(create_model("densenet_bc40_k12"), "torchscript", target, image_size=32, progress=meanwhile)
    assert target.read_text() == "another program's" and os.listdir(tmp_path) == ["x.ts"]


def test_export_to_standard_output(tmp_path):
    result = subprocess.run([sys.executable, "-m", "densenet_trt", "export", "--model", "densenet_bc40_k12", "-q",
                             "--format", "torchscript", "-o", "-"], capture_output=True, cwd=tmp_path, check=True)
    assert result.stdout[:2] == b"PK" and b"wrote standard output" in result.stderr  # a TorchScript zip
    assert os.listdir(tmp_path) == []


# --- a replaced engine folder whose old content cannot be removed -----------------------------

@pytest.mark.parametrize("options", ["ro,size=1m", "size=1m"], ids=["read-only", "mount-point"])
def test_force_over_an_engine_folder_that_cannot_be_removed_is_refused_first(outputs, options):
    with mounted(outputs / ENGINE / "sub", options):
        refused(["build", "--model", "densenet_bc40_k12", "--backend", "torchscript", "-o", "engines",
                 "--name", "e", "--force", "--no-verify", "-q"], outputs, "cannot replace engines/e")


def test_old_content_that_became_unremovable_during_the_build_is_named(outputs):
    """A mount made inside the old folder after the first check: the new folder is in place and
    the error names what is left of the old one."""
    (outputs / ENGINE / "sub").mkdir()
    with pytest.raises(DenseNetTRTError, match="could not be removed") as e:
        with atomic_dir(outputs / ENGINE, force=True) as tmp:
            (tmp / "model.onnx").write_text("new")
            mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(outputs / ENGINE / "sub")],
                                   capture_output=True, text=True)
            if mount.returncode:
                pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    [left] = (outputs / "engines").glob(".e.partial-*")
    try:
        assert (outputs / ENGINE / "model.onnx").read_text() == "new"
        assert str(left) in str(e.value) and os.listdir(left) == ["sub"]
    finally:
        subprocess.run(["umount", str(left / "sub")], check=True)


# --- the umask --------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o002, 0o077], ids=["002", "077"])
def test_export_triton_honours_the_umask(work, mask, monkeypatch):
    monkeypatch.chdir(work)
    with umask(mask):
        result = CliRunner().invoke(main, ["export-triton", ENGINE, "--repository", "repo", "--model-name", "u"])
    assert result.exit_code == 0, result.output
    for path in [work / "repo" / "u", *(work / "repo" / "u").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o777 if path.is_dir() else 0o666) & ~mask, (path, oct(mode))


def test_names_up_to_the_limit_are_taken(tmp_path):
    with atomic_dir(tmp_path / ("n" * MAX_NAME_BYTES)) as tmp:
        (tmp / "f").write_text("x")
    assert Path(tmp_path / ("n" * MAX_NAME_BYTES) / "f").read_text() == "x"
