"""The README's quickstart: the commands between `<!-- quickstart -->` and `<!-- /quickstart -->`.

The default suite checks that every command parses as written (its options exist, the files it
names are in the repository, each engine it uses was built before, at batch sizes its range
holds); the slow tier runs every command, in order, in a fresh folder, as a user would from the
repository root.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from densenet_trt.cli import main
from densenet_trt.model.data import Preprocessing, image_files, read_image
from densenet_trt.engine.spec import BatchRange

REPO = Path(__file__).resolve().parents[1]
# What the quickstart reads from the repository; the slow test copies these into a fresh folder.
SHIPPED = ("examples/digits/digits.py", "examples/digits/write_images.py", "tests/data/digits_densenet_bc40_k12.pth")


def quickstart_commands(text: str | None = None) -> list[str]:
    """The commands of the README's quickstart block, continuation lines joined."""
    text = (REPO / "README.md").read_text(encoding="utf-8") if text is None else text
    found = re.findall(r"<!-- quickstart -->\n```bash\n(.*?)```\n<!-- /quickstart -->", text, re.DOTALL)
    assert len(found) == 1, "README.md needs one ```bash block between <!-- quickstart --> and <!-- /quickstart -->"
    joined = found[0].replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def parse(command: str) -> tuple[str, dict[str, object], list[str]]:
    """``(subcommand, {flag: value}, arguments)`` of one `densenet-trt` command, parsed by the
    CLI's own Click parser (an unknown option fails here); values are the text as written."""
    words = shlex.split(command, comments=True)
    assert words[0] == "densenet-trt" and words[1] in main.commands, f"not a densenet-trt command: {command}"
    cmd = main.commands[words[1]]
    values, _, _ = cmd.make_parser(click.Context(cmd, info_name=words[1])).parse_args(words[2:])
    flags, arguments = {}, []
    for param in cmd.params:
        if param.name in values and isinstance(param, click.Option):
            flags[max(param.opts, key=len)] = values[param.name]
        elif param.name in values:
            value = values[param.name]
            arguments += list(value) if isinstance(value, tuple) else [value]
    return words[1], flags, arguments


def test_quickstart_block_is_found_and_short():
    commands = quickstart_commands()
    assert 8 <= len(commands) <= 25
    with pytest.raises(AssertionError):
        quickstart_commands("```bash\necho no markers\n```\n")
    assert quickstart_commands("<!-- quickstart -->\n```bash\na \\\n  b  # c\n# d\n```\n<!-- /quickstart -->") == ["a    b  # c"]


def test_quickstart_commands_parse_and_chain():
    """Every option exists; every repository file named exists; every engine used was built by
    an earlier command with that --name, and profile's batch sizes are within its range."""
    built: dict[str, BatchRange] = {}
    steps = set()
    for command in quickstart_commands():
        if command.startswith("python "):
            script = shlex.split(command, comments=True)[1]
            assert (REPO / script).is_file(), f"{script} is not in the repository"
            continue
        name, flags, arguments = parse(command)
        steps.add(name)
        for path in [v for v in [*flags.values(), *arguments] if isinstance(v, str)]:
            if path.startswith(("examples/", "tests/")):
                assert (REPO / path).exists(), f"{path} is not in the repository"
        if name == "build":
            built[f"engines/{flags['--name']}"] = BatchRange.parse(flags["--batch"])
            continue
        engine = arguments[0] if arguments else None
        if name in ("info", "verify", "predict", "profile", "export-triton"):
            assert engine in built, f"{command}: {engine} is not built by an earlier command"
        if name == "profile":
            assert "--batch" not in flags, "profile's --batch is a deprecated spelling of --batch-size"
            for size in flags["--batch-size"].split(","):
                built[engine].check(int(size))
    assert {"build", "info", "verify", "predict", "profile", "export-triton", "calibrate"} <= steps


def test_a_renamed_option_fails_the_parse_check():
    with pytest.raises(click.UsageError, match="--batches"):
        parse("densenet-trt profile engines/digits --batches 1,8")


def _write_images_module():
    sys.path.insert(0, str(REPO / "examples" / "digits"))
    try:
        spec = importlib.util.spec_from_file_location("write_images", REPO / "examples" / "digits" / "write_images.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "examples" / "digits"))
    return module


def test_write_images_writes_each_split_with_its_labels(tmp_path, monkeypatch, capsys):
    """The PNGs, one folder per digit, are digits.py's split: the same images in the same order
    (but for 8-bit rounding), under their labels; an existing folder is refused."""
    module = _write_images_module()
    digits = sys.modules["digits"]
    monkeypatch.setattr(sys, "argv", ["write_images.py", str(tmp_path / "out")])
    module.main()
    assert "calibration: 300 images" in capsys.readouterr().out
    expected, labels = digits.load_split("test")
    files = sorted(image_files(tmp_path / "out" / "test"), key=lambda f: f.name)
    assert [int(f.parent.name) for f in files] == labels.tolist()
    assert len(image_files(tmp_path / "out" / "calibration")) == 300
    steps = Preprocessing(resize=32, crop=32, mean=(digits.MEAN,), std=(digits.STD,))
    pixels = np.stack([read_image(f, steps) for f in files[:50]])
    assert np.abs(pixels - expected[:50]).max() < 2 / 255 / digits.STD
    with pytest.raises(SystemExit, match="already exists"):
        module.main()


@pytest.mark.slow
def test_quickstart_runs_as_written(tmp_path):
    """Every command, in order, in a fresh folder holding only the shipped files it reads."""
    for name in SHIPPED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if shutil.which("densenet-trt", path=env["PATH"]) is None:
        pytest.skip("the densenet-trt command is not installed (pip install -e .)")
    outputs = []
    for command in quickstart_commands():
        run = subprocess.run(["bash", "-c", command], check=False, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, f"{command}\n{run.stdout}\n{run.stderr}"
        outputs.append(run.stdout)
    for written in ("engines/digits/manifest.json", "profile.png", "models/digits/config.pbtxt",
                    "calibration/densenet_bc40_k12-max-32/report.json", "engines/digits-int8/manifest.json"):
        assert (tmp_path / written).is_file(), f"the quickstart did not write {written}"
    # The last command predicts the test folder of 7s with the int8 engine: most must be 7.
    lines = outputs[-1].splitlines()
    tops = [lines[i + 1].split()[0] for i, line in enumerate(lines) if line.endswith(".png")]
    assert len(tops) == len(list((tmp_path / "digits/test/7").iterdir())) > 20
    assert tops.count("7") >= 0.9 * len(tops)


# Files the docs' commands write in the repository root: docs/int8.md's data, sensitivity
# report and budget calibration (`--output . --name budget`), examples/cpp's inputs and logits.
LEFT_BEHIND = ("calibration.npz", "test.npz", "sens.json", "sens.png", "budget/calibration.json",
               "images.npy", "logits.npy")


@pytest.mark.parametrize("path", LEFT_BEHIND)
def test_files_the_docs_leave_in_the_repository_root_are_ignored(path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    assert path.split("/")[0] in (REPO / "docs/int8.md").read_text() + (REPO / "examples/cpp/README.md").read_text()
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO)
    assert ignored.returncode == 0, f"{path} is not git-ignored"
    nested = subprocess.run(["git", "check-ignore", "--no-index", "-q", f"examples/{path}"], cwd=REPO)
    assert nested.returncode == 1, f"examples/{path} is ignored too: the pattern is not anchored"


def test_the_readme_says_which_install_is_for_which_machine_and_that_tensorrt_has_not_run_on_a_gpu():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    install = text[text.index("## Install"):text.index("## Quickstart")]
    rows = {line.split("|")[1].strip(): line for line in install.splitlines() if line.startswith("| ") and "---" not in line}
    cpu = rows["a CPU-only machine (no NVIDIA GPU)"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and 'pip install -e ".[cpu,test]"' in cpu
    gpu = next(line for name, line in rows.items() if name.startswith("an NVIDIA GPU machine"))
    assert "torch==2.14.1 torchvision==0.29.1 -e \".[cpu,test]\"" in gpu and "6.2 GB" in gpu and "what CI runs" in gpu
    assert "What you have after" in install and "densenet-trt build --model densenet121 --force" in install
    assert "**The TensorRT paths have not yet run on a GPU.**" in install
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install --quiet torch==2.14.1 torchvision==0.29.1 -e ".[cpu,test]"' in ci  # the row that says so


def test_the_readme_python_section_compiles_a_model_and_warms_it_up():
    import ast

    import densenet_trt

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## In Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    calls = {node.func.attr for node in ast.walk(ast.parse(code))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert {"compile", "warmup"} <= calls
    assert callable(densenet_trt.compile) and callable(densenet_trt.Engine.warmup)
