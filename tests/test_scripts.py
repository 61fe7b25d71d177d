"""The benchmark scripts, run on the CPU with a small preset (what a GPU machine runs with densenet121)."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_matmul_rate_reports_gflops():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "matmul_rate.py"), "--size", "256", "--seconds", "0.2"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["device"] == "cpu" and result["gflops"]["fp32"] > 0 and result["gflops"]["bf16"] > 0


@pytest.mark.slow
def test_gpu_benchmark_script_from_the_source_tree(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": "densenet_bc100_k12",
           "BATCHES": "2", "ITERATIONS": "2", "PYTHONPATH": ""}
    run = subprocess.run(["bash", str(REPO / "scripts" / "gpu_benchmark.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "profile.json").read_text())
    backends = {e["backend"] for e in report["engines"]}
    assert {"torchscript", "onnxruntime"} <= backends
    assert ("onnxruntime", "int8") in {(e["backend"], e["precision"]) for e in report["engines"]}
    assert (tmp_path / "profile.md").is_file() and (tmp_path / "profile.png").is_file()
    # Each engine is built for the batch it is timed at: its range is that one size.
    assert {e["batch_range"] for e in report["engines"]} == {"2"}
    assert {(r["engine"], r["batch"]) for r in report["rows"] if r["engine"] is not None} == {
        (i, int(e["batch_range"])) for i, e in enumerate(report["engines"])}
    from densenet_trt.backends import BACKENDS

    if not BACKENDS["tensorrt"].available().ok:
        assert "skipped: tensorrt fp32 on cuda" in run.stdout


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    """scripts/gpu_check.sh run from a copy of this checkout as a fresh clone has it (tracked and
    untracked files, nothing ignored, no build outputs), with PYTHONPATH unset: the script must
    need no `pip install` of the project, as on the GPU machine, which has no package index."""
    base = tmp_path_factory.mktemp("gpu_check")
    clone, out = base / "clone", base / "out"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": "densenet_bc100_k12"}
    env.pop("PYTHONPATH", None)
    run = subprocess.run(["bash", str(clone / "scripts" / "gpu_check.sh"), str(out)], env=env,
                         capture_output=True, text=True, cwd=base)
    with tarfile.open(out / "gpu_check.tgz") as archive:
        members = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        texts = {name: archive.extractfile(m).read().decode() for name, m in members.items() if m.isfile()}
    return SimpleNamespace(run=run, clone=clone, out=out, members=members, texts=texts)


def test_gpu_check_runs_on_the_cpu_with_every_gpu_row_skipped_and_the_reason(gpu_check):
    """On a machine without a GPU every row is skipped with its reason, and it exits 0 (nothing failed)."""
    run = gpu_check.run
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [line.split("\t") for line in gpu_check.texts["steps.tsv"].splitlines()[1:]]
    assert len(rows) == 15 and all(status in ("ok", "skipped") for _, status, _, _ in rows)
    steps = [step for step, _, _, _ in rows]
    assert {"build densenet_bc100_k12-tensorrt-onnx-fp32", "build densenet_bc100_k12-inductor-fp16",
            "profile", "profile-cuda-graphs-transfers", "profile-tensorrt"} <= set(steps)
    if not torch.cuda.is_available():
        assert all(status == "skipped" and "no CUDA device" in detail for _, status, _, detail in rows)
    assert "== summary (densenet_bc100_k12" in run.stdout


def test_gpu_check_writes_two_files_the_archive_and_the_summary(gpu_check):
    """Only a few files directly under the output folder come back from the GPU machine."""
    assert sorted(p.name for p in gpu_check.out.iterdir()) == ["gpu_check.tgz", "summary.md"]
    assert {"steps.tsv", "environment.txt", "summary.md"} <= set(gpu_check.texts)
    assert not any(name.startswith("engines") for name in gpu_check.members)
    summary = (gpu_check.out / "summary.md").read_text()
    assert summary == gpu_check.texts["summary.md"] and "| build densenet_bc100_k12-torchscript-fp32 |" in summary


def test_gpu_check_runs_the_package_from_its_own_checkout(gpu_check):
    assert f"densenet_trt from {gpu_check.clone / 'densenet_trt' / '__init__.py'}" in gpu_check.texts["environment.txt"]


def test_gpu_check_reads_an_import_by_its_exit_status_not_its_last_line(tmp_path):
    """`import torch_tensorrt` prints a notice when ModelOpt is absent: a module that imports,
    whatever it prints, is available; one that raises gives its error line as the reason."""
    (tmp_path / "noisy.py").write_text("import sys\nprint('a notice', file=sys.stderr)\n")
    (tmp_path / "broken.py").write_text("print('loading')\nraise ImportError('libnvinfer.so.10: cannot open')\n")
    script = (REPO / "scripts" / "gpu_check.sh").read_text()
    functions = "\n".join(re.findall(r"^(?:first_error|import_failure)\(\) \{.*?^\}$", script, re.M | re.S))
    assert functions.count("()") == 2
    probe = f'{functions}\npy={shlex.quote(sys.executable)}; no_gpu=""; work={shlex.quote(str(tmp_path))}\n' \
            'mkdir -p "$work/logs"; echo "noisy=[$(import_failure noisy)]"; echo "broken=[$(import_failure broken)]"\n'
    run = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert "noisy=[]" in run.stdout, run.stdout + run.stderr
    assert "broken=[import broken failed: ImportError: libnvinfer.so.10: cannot open]" in run.stdout


def int8_benchmark():
    """scripts/int8_benchmark.py as a module (registered, as its dataclasses need)."""
    if "int8_benchmark" not in sys.modules:
        spec = importlib.util.spec_from_file_location("int8_benchmark", REPO / "scripts" / "int8_benchmark.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["int8_benchmark"] = module
        spec.loader.exec_module(module)
    return sys.modules["int8_benchmark"]


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--seconds", "-1"], "--seconds must be positive, got -1.0"),
    (["--model", "densenet_nope"], "densenet_nope"),
    (["--out-is-a-file"], "is a file; give a folder"),
    (["--without-nncf"], "NNCF is not installed: pip install 'densenet-trt[bench]'"),
])
def test_int8_benchmark_refuses_in_one_line_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    script = int8_benchmark()
    out = tmp_path / "out"
    if args == ["--out-is-a-file"]:
        out.write_text("")
        args = []
    if args == ["--without-nncf"]:
        monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` raises ImportError
        args = []
    assert script.main(["--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert out.is_file() or not out.exists()


def test_int8_benchmark_rounds_are_round_robin_and_stop_at_the_time_limit():
    script = int8_benchmark()
    order = []
    calls = [lambda: order.append("a"), lambda: order.append("b")]
    times = script.interleaved(calls, rounds=3, seconds=None)
    assert order == ["a", "b"] + ["a", "b"] * 3 and [len(t) for t in times] == [3, 3]
    order.clear()
    slow = [lambda: (order.append("a"), time.sleep(0.02))]
    times = script.interleaved(slow, rounds=100, seconds=0.01)
    assert len(times[0]) == 1 and order == ["a", "a"]


@pytest.mark.slow
def test_int8_benchmark_on_a_small_preset(tmp_path):
    """The whole script, every row, on the smallest preset with 2 rounds (about 4 minutes here)."""
    pytest.importorskip("nncf", reason="NNCF: pip install 'densenet-trt[bench]'")
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn")
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "int8_benchmark.py"), "--model", "densenet_bc40_k12",
                          "--rounds", "2", "--gemm-size", "256", "--samples", "8", "--out", str(tmp_path)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "int8_benchmark.json").read_text())
    rows = report["speed"]["rows"]
    assert report["speed"]["rounds"] == 2 and all(row["calls"] == 2 for row in rows)
    assert [f["gemm"].split()[0] for f in report["speed"]["floors"]] == ["fp32", "bf16", "int8"]
    engines = {(row["engine"], row["quantizer"].split()[0]) for row in rows}
    assert {("ONNX Runtime fp32", "-"), ("OpenVINO fp32", "-"), ("OpenVINO int8", "densenet-trt"),
            ("ONNX Runtime int8", "densenet-trt"), ("ONNX Runtime int8", "ORT"), ("OpenVINO int8", "NNCF"),
            ("OpenVINO int8, bf16 hint", "densenet-trt"), ("OpenVINO int8, bf16 hint", "NNCF")} <= engines
    assert report["digits"]["float_top1"] >= 0.97
    for row in rows:
        assert row["median_ms"] > 0 and row["vs_fp32_floor"] > 0 and row["vs_int8_floor"] > 0
        assert 0 <= row["digits_top1"] <= 1
        why = row["why"]
        assert why["convs"] > 0 and why["per_type"] and abs(sum(t["share"] for t in why["per_type"]) - 1) < 1e-6
        # Float engines run no int8 convolution; every int8 engine runs all but the stem in int8.
        if "int8" not in row["engine"]:
            assert why["int8_convs"] == 0
        else:
            assert why["int8_convs"] == why["convs"] - 1, row
            assert row["digits_top1"] >= report["digits"]["float_top1"] - 0.01, row
    assert "| engine | quantizer | median ms | vs fp32 floor | vs int8 floor | digits top-1 |" in run.stdout
    assert "### OpenVINO int8, NNCF quantize: ms per call by layer type" in run.stdout
