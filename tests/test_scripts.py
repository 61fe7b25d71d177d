"""The benchmark scripts, run on the CPU with a small preset (what a GPU machine runs with densenet121)."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_gpu_check_runs_on_the_cpu_with_every_gpu_row_skipped_and_the_reason(tmp_path):
    """scripts/gpu_check.sh is for a machine with an NVIDIA GPU; on this one it must still run,
    skip every row with the reason, and end with the summary table (exit 0: nothing failed)."""
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": "densenet_bc100_k12", "PYTHONPATH": ""}
    run = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [line.split("\t") for line in (tmp_path / "steps.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 16 and all(status in ("ok", "skipped") for _, status, _, _ in rows)
    assert {"build densenet_bc100_k12-tensorrt-onnx-fp32", "build densenet_bc100_k12-tensorrt-onnx-fp16"} <= {
        step for step, _, _, _ in rows}
    if not torch.cuda.is_available():
        assert all(status == "skipped" and "no CUDA device" in detail for _, status, _, detail in rows)
    assert "== summary (densenet_bc100_k12" in run.stdout
