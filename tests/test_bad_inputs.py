"""Bad input and faults, as a user meets them on the command line: each is one line on stderr,
exit status 1, no traceback, nothing half-written, and nothing that was there before changed."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from densenet_trt.cli import main


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content (hidden temporaries included)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args, cwd: Path, message: str) -> None:
    """``densenet-trt ARGS`` run in ``cwd`` exits 1 with one line naming ``message``, and leaves
    every file under ``cwd`` as it was."""
    before = snapshot(cwd)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert snapshot(cwd) == before


@pytest.fixture
def work(tmp_path):
    """A folder with engines/, calibration/ and an unrelated folder, each holding a file."""
    for sub in ("engines/other-engine", "calibration/other-calibration", "unrelated"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "keep.txt").write_text(sub)
    return tmp_path


BAD_NAMES = [".", "..", "sub/dir", "/unrelated", ".hidden", ""]
SMALL = ["--model", "densenet_bc100_k12"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_build_name_that_is_not_one_folder_name_is_refused_before_any_work(work, name):
    if name == "/unrelated":
        name = str(work / "unrelated")
    refused(["build", *SMALL, "--backend", "onnxruntime", "-o", "engines", "--name", name, "--force"],
            work, "is not a plain folder name")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_calibrate_name_that_is_not_one_folder_name_is_refused_before_any_work(work, name):
    if name == "/unrelated":
        name = str(work / "unrelated")
    refused(["calibrate", *SMALL, "--synthetic", "-o", "calibration", "--name", name, "--force"],
            work, "is not a plain folder name")
