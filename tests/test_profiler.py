"""The profiler: statistics against numpy, the interleaved timing loop on synthetic callables
with a known ratio, option errors, skipped batch sizes, the report's files, and a small real
engine end to end. GPU paths (CUDA events, CUDA graphs, transfers) run only where there is one."""

import csv
import dataclasses
import json
import shutil
import time

import numpy as np
import pytest
import torch

from densenet_trt import DenseNetTRTError
from densenet_trt.build import build
from densenet_trt.engine import Engine, load
from densenet_trt.profiler import _engine_info, profile
from densenet_trt.manifest import PROFILE
from densenet_trt.report import EngineInfo, ProfileReport, Row, Settings, Skipped
from densenet_trt.spec import Precision
from densenet_trt.stats import paired_speedup, summarize
from densenet_trt.timing import cpu_timer, cuda_timer, interleave

SMALL = {"block_config": (2, 2, 2)}
FAST = {"iterations": 3, "warmup": 1, "gap": 0.0}


def small_build(tmp, **kwargs):
    kwargs.setdefault("backend", "onnxruntime")
    return build("densenet_bc100_k12", batch="1:2:4", output=tmp, overrides=SMALL, **kwargs)


@pytest.fixture(scope="module")
def engine_path(shared_engine):
    return shared_engine.path


@pytest.fixture(scope="module")
def report(engine_path):
    lines = []
    result = profile([engine_path], batches=(1, 4, 8), progress=lines.append, **FAST)
    assert any("skip [0] batch 8" in line for line in lines)
    return result


def spin(ms: float) -> None:
    """Busy for ``ms`` of wall-clock time."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def synthetic_report() -> ProfileReport:
    """A report as a GPU run with transfers would make it, for the pure parts."""
    gpu = {"name": "NVIDIA H100", "compute_capability": "9.0", "driver": "580.1", "cuda": "13.0"}
    engine = EngineInfo(
        path="/e/x", name="x", model="densenet121", backend="tensorrt", format="exported-program",
        precision="fp16", batch_range="1:8:32", image_size=224,
        device={"type": "cuda", "cpu": "cpu", "cpu_count": 16, "gpu": gpu},
        versions={"densenet-trt": "0.1.0", "torch": "2.14.1", "tensorrt": "11.1"},
        build_seconds=40.0, load_seconds=0.5, eager=["fp32", "fp16"], notes=[],
    )
    phases = {k: summarize([0.1, 0.2, 0.3]) for k in ("h2d", "compute", "d2h")}
    rows = [
        Row(0, 1, "eager", "fp32", summarize([4.0, 4.1, 4.2]), phases, 4.0, 900.0, 120.0),
        Row(0, 1, "eager", "fp16", summarize([2.0, 2.1, 2.2]), phases, 2.0, 900.0, 120.0),
        Row(0, 1, "engine", "fp16", summarize([1.0, 1.0, 2.0]), phases, None, 900.0, 120.0),
    ]
    return ProfileReport(
        date_utc="2025-01-01T00:00:00+00:00",
        settings=Settings(batches=(1, 64), threads=4, cuda_graphs=True, include_transfers=True, gap=0.0),
        host={"cpu": "cpu", "cpu_count": 16, "threads": 4, "python": "3.12", "platform": "Linux",
              "torch": "2.14.1", "numpy": "2.3", "densenet-trt": "0.1.0"},
        engines=[engine], rows=rows, skipped=[Skipped(0, 64, "batch 64 is outside x's range 1..32")],
    )


# --- statistics ------------------------------------------------------------------------------


def test_summarize_matches_numpy():
    samples = [3.0, 1.0, 2.0, 10.0, 4.0, 5.0, 2.5, 7.0, 1.5, 30.0]
    a = np.array(samples)
    s = summarize(samples)
    assert s.count == 10
    assert (s.min, s.max, s.mean, s.median) == pytest.approx((a.min(), a.max(), a.mean(), np.median(a)))
    assert (s.p90, s.p95, s.p99) == pytest.approx(tuple(np.percentile(a, [90, 95, 99])))
    assert s.std == pytest.approx(a.std()) and s.cv == pytest.approx(a.std() / a.mean())
    with pytest.raises(ValueError):
        summarize([])


def test_coefficient_of_variation_over_five_percent_is_flagged():
    assert not summarize([10.0, 10.1, 9.9, 10.0]).unstable
    assert summarize([10.0, 10.0, 10.0, 13.0]).unstable
    rows = {line.split("|")[3].strip(): line for line in synthetic_report().table().splitlines()
            if line.startswith("| [0]")}
    assert "unstable, rerun" in rows["engine"]  # 1, 1, 2 ms
    assert "unstable" not in rows["eager fp32"]  # 4.0, 4.1, 4.2 ms


def test_paired_speedup_is_the_median_of_paired_ratios():
    assert paired_speedup([2.0, 4.0, 30.0], [1.0, 2.0, 3.0]) == 2.0
    with pytest.raises(ValueError):
        paired_speedup([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_speedup([1.0], [0.0])


# --- the timing loop -------------------------------------------------------------------------


def test_interleaved_timing_of_callables_with_a_known_ratio():
    order = []
    slow = cpu_timer(lambda: (order.append("a"), spin(2.0)))
    fast = cpu_timer(lambda: (order.append("b"), spin(1.0)))
    a, b = interleave([slow, fast], warmup=2, iterations=15)
    assert order == ["a", "b"] * 17  # warm-up rounds, then timed ones, alternating
    assert len(a) == len(b) == 15
    ratio = paired_speedup([s["latency"] for s in a], [s["latency"] for s in b])
    assert 1.6 <= ratio <= 2.5  # a test of the pairing, not of the machine's speed


def test_interleave_by_duration_and_warmup_time():
    calls = []
    (samples,) = interleave([cpu_timer(lambda: calls.append(spin(1.0)))], warmup_time=0.02, duration=0.05)
    assert len(samples) >= 5 and len(calls) > len(samples)
    assert all(s["latency"] >= 1.0 for s in samples)


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"iterations": 0}, "iterations must be a positive integer"),
    ({"duration": -1}, "duration must be a positive number"),
    ({"iterations": 5, "duration": 1.0}, "not both"),
    ({"warmup": 1, "warmup_time": 1.0}, "not both"),
    ({"warmup": -1}, "warmup must be a count"),
    ({"batches": ()}, "batches must be positive"),
    ({"batches": (0,)}, "batches must be positive"),
    ({"vs": "onnx"}, "vs must be 'eager' or 'none'"),
    ({"threads": 0}, "threads must be a positive integer"),
    # Unbounded runs: these ran until killed.
    ({"duration": float("inf")}, "duration must be a positive number of seconds up to 3600, got inf"),
    ({"duration": float("nan")}, "duration must be a positive number of seconds up to 3600, got nan"),
    ({"duration": 3600.5}, "duration must be a positive number of seconds up to 3600, got 3600.5"),
    ({"warmup_time": float("inf")}, "warmup_time must be a positive number of seconds up to 3600, got inf"),
    ({"warmup_time": float("nan")}, "warmup_time must be a positive number of seconds up to 3600, got nan"),
    ({"iterations": 10**6 + 1}, "iterations must be a positive integer up to 1,000,000, got 1000001"),
    ({"warmup": 10**6 + 1}, "warmup must be a count from 0 to 1,000,000, got 1000001"),
    ({"gap": float("inf")}, "gap must be 0 to 10 seconds, got inf"),
    ({"gap": float("nan")}, "gap must be 0 to 10 seconds, got nan"),
])
def test_bad_options_are_refused_before_anything_runs(kwargs, message):
    with pytest.raises(DenseNetTRTError, match=message):
        profile(["does-not-matter"], **kwargs)


@pytest.mark.parametrize("flag", ["cuda_graphs", "include_transfers"])
def test_gpu_options_on_a_cpu_engine_are_refused(engine_path, flag):
    with pytest.raises(DenseNetTRTError, match=f"{flag} applies to GPU engines.*without {flag}=True"):
        profile([engine_path], **{flag: True}, **FAST)


def test_unwritable_outputs_are_refused_before_measuring(engine_path, tmp_path):
    lines = []
    for bad, message in [
        (tmp_path / "missing" / "r.json", "does not exist"),
        (tmp_path, "is a folder"),
        (tmp_path / "r.txt", "cannot tell the report format"),
    ]:
        with pytest.raises(DenseNetTRTError, match=message):
            profile([engine_path], outputs=[bad], progress=lines.append, **FAST)
    assert lines == []  # nothing loaded, nothing measured
    with pytest.raises(DenseNetTRTError, match="does not exist"):
        synthetic_report().write_csv(tmp_path / "missing" / "r.csv")


def test_missing_or_corrupt_engine_is_the_load_error(engine_path, tmp_path):
    with pytest.raises(DenseNetTRTError, match="does not exist"):
        profile([tmp_path / "nope"], **FAST)
    broken = tmp_path / "broken"
    shutil.copytree(engine_path, broken)
    (broken / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(DenseNetTRTError, match="does not match its recorded sha256"):
        profile([broken], **FAST)


def test_a_checkpoint_that_moved_is_an_error_naming_the_fix(engine_path, tmp_path, edit_manifest):
    moved = tmp_path / "moved"
    shutil.copytree(engine_path, moved)
    edit_manifest(moved, lambda m: m["model"].update(weights={"file": str(tmp_path / "gone.pt"), "sha256": "0" * 64}))
    with pytest.raises(DenseNetTRTError, match="gone.pt is not there.*vs=none"):
        profile([moved], **FAST)
    (tmp_path / "gone.pt").write_bytes(b"another checkpoint")
    with pytest.raises(DenseNetTRTError, match="sha256 differs"):
        profile([moved], **FAST)
    assert profile([moved], vs="none", **FAST).rows[0].runner == "engine"


# --- batch sizes -----------------------------------------------------------------------------


def test_batch_sizes_outside_the_range_are_skipped_with_the_reason(report):
    assert report.skipped == [Skipped(0, 8, f"{report.engines[0].name}: batch 8 is outside this engine's batch range 1:2:4")]
    assert sorted({r.batch for r in report.rows}) == [1, 4]
    assert "batch 8 skipped: " in report.table() and "batch 8 is outside" in report.table()


def test_no_batch_size_that_can_run_is_an_error(engine_path):
    with pytest.raises(DenseNetTRTError, match="no batch size can run: .*batch 8 is outside this engine's batch range 1:2:4"):
        profile([engine_path], batches=(8, 16), **FAST)


# --- a real engine end to end ----------------------------------------------------------------


def test_a_small_engine_against_eager(report, engine_path):
    assert [(r.batch, r.runner, r.precision) for r in report.rows] == [
        (1, "eager", "fp32"), (1, "engine", "fp32"), (4, "eager", "fp32"), (4, "engine", "fp32")]
    for r in report.rows:
        assert r.latency_ms.count == 3 and r.latency_ms.min > 0 and r.phases_ms == {}
        assert r.images_per_s == pytest.approx(r.batch * 1000 / r.latency_ms.median)
        assert r.peak_host_rss_mb > 0 and r.peak_gpu_mb is None
        assert (r.speedup is not None and r.speedup > 0) == (r.runner == "eager")
    e = report.engines[0]
    assert (e.model, e.backend, e.format, e.precision, e.batch_range) == (
        "densenet_bc100_k12", "onnxruntime", "onnx", "fp32", "1:2:4")
    assert e.device["type"] == "cpu" and e.device["cpu"] and e.eager == ["fp32"]
    assert e.build_seconds > 0 and e.load_seconds > 0 and "onnxruntime" in e.versions
    assert report.settings.threads == report.host["threads"] == torch.get_num_threads()
    assert report.host["torch"] == torch.__version__
    conditions = report.table().split("\n\n")[0]
    for word in ("densenet_bc100_k12", "onnxruntime (onnx)", "fp32", e.device["cpu"], "torch threads",
                 "torch " + torch.__version__, report.date_utc):
        assert word in conditions


def test_eager_runs_the_engines_precision_where_pytorch_can_on_this_device(tmp_path):
    bf16 = small_build(tmp_path, backend="torchscript", precision="bf16").path
    result = profile([bf16], **FAST)
    assert [r.label for r in result.rows] == ["eager fp32", "eager bf16", "engine"]
    assert result.rows[-1].precision == "bf16" and result.engines[0].notes == []


def test_eager_fp16_on_the_cpu_is_not_run_and_the_report_says_so(engine_path):
    real = load(engine_path)
    fp16 = Engine(real.path, dataclasses.replace(real.manifest, precision=Precision.FP16), real._runner)
    info = _engine_info(fp16, 0.1)
    assert info.eager == ["fp32"]
    assert info.notes == ["eager fp16 is not run on cpu: PyTorch's CPU fp16 convolutions are slow "
                          "reference code, no fair baseline; compared with eager fp32 only"]


def test_threads_are_set_for_the_run_and_restored(engine_path):
    before = torch.get_num_threads()
    result = profile([engine_path], threads=1, vs="none", **FAST)
    assert result.settings.threads == 1 and "1 torch threads" in result.table()
    assert torch.get_num_threads() == before


# --- the report ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ["real", "synthetic"])
def test_json_round_trip(make, report, tmp_path):
    original = report if make == "real" else synthetic_report()
    data = original.to_dict()
    assert data["schema"] == PROFILE.schema and data["schema_version"] == 1
    assert ProfileReport.from_dict(json.loads(json.dumps(data))) == original
    original.write_json(tmp_path / "r.json")
    assert ProfileReport.from_dict(json.loads((tmp_path / "r.json").read_text())) == original
    with pytest.raises(DenseNetTRTError, match="not a densenet-trt/profile version 1 report"):
        ProfileReport.from_dict({**data, "schema_version": 2})


def test_csv_has_a_row_per_engine_batch_and_runner(report, tmp_path):
    report.write_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["batch"], r["runner"], r["skipped"]) for r in rows] == [
        ("1", "eager", ""), ("1", "engine", ""), ("4", "eager", ""), ("4", "engine", ""),
        ("8", "engine", report.skipped[0].reason)]
    first = rows[0]
    assert float(first["median_ms"]) == pytest.approx(report.rows[0].latency_ms.median)
    assert float(first["speedup"]) == pytest.approx(report.rows[0].speedup)
    assert first["backend"] == "onnxruntime" and first["threads"] == str(report.settings.threads)


def test_markdown_and_terminal_table(tmp_path):
    report = synthetic_report()
    report.write_markdown(tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert text.startswith("# densenet-trt profile\n") and text.endswith(report.table())
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(report.rows) and len({len(line) for line in table}) == 1
    assert "NVIDIA H100 (compute capability 9.0, driver 580.1, CUDA 13.0)" in text
    assert "CUDA graphs on, transfers in" in text and "| 4.00x" in text
    assert "h2d 0.200 ms, compute 0.200 ms, d2h 0.200 ms" in text


@pytest.mark.parametrize("make", ["real", "synthetic"])
def test_plot_is_a_png_written_by_matplotlib(make, report, tmp_path):
    pytest.importorskip("matplotlib")
    (report if make == "real" else synthetic_report()).plot(tmp_path / "r.png")
    data = (tmp_path / "r.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and b"Matplotlib" in data[:200]
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]  # no temporary left behind


def test_outputs_are_written_after_measuring(engine_path, tmp_path):
    pytest.importorskip("matplotlib")
    names = ["r.json", "r.csv", "r.md", "r.png"]
    lines = []
    result = profile([engine_path], vs="none", outputs=[tmp_path / n for n in names],
                     progress=lines.append, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert ProfileReport.from_dict(json.loads((tmp_path / "r.json").read_text())) == result
    assert lines[-1] == f"wrote {tmp_path / 'r.png'}"


# --- GPU -------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_events_time_callables_with_a_known_ratio():
    a = torch.randn(2048, 2048, device="cuda")
    once = cuda_timer(lambda x: x @ x, a)
    twice = cuda_timer(lambda x: (x @ x) @ x, a)
    slow, fast = interleave([twice, once], warmup=3, iterations=20)
    assert 1.6 <= paired_speedup([s["latency"] for s in slow], [s["latency"] for s in fast]) <= 2.5


@pytest.mark.gpu
def test_cuda_graph_replay_and_transfers_are_timed_apart():
    x = torch.randn(8, 3, 224, 224)
    timer = cuda_timer(lambda t: torch.nn.functional.relu(t * 2.0), x, include_transfers=True, cuda_graphs=True)
    (samples,) = interleave([timer], warmup=2, iterations=5)
    for s in samples:
        assert set(s) == {"latency", "h2d", "compute", "d2h"} and min(s.values()) > 0
        assert s["latency"] == pytest.approx(s["h2d"] + s["compute"] + s["d2h"], rel=0.05)


@pytest.mark.gpu
def test_a_gpu_engine_against_eager_fp32_and_fp16(tmp_path):
    engine = small_build(tmp_path, backend="torchscript", device="cuda", precision="fp16").path
    result = profile([engine], batches=(1, 4), include_transfers=True, **FAST)
    assert [r.label for r in result.rows[:3]] == ["eager fp32", "eager fp16", "engine"]
    assert all(r.peak_gpu_mb > 0 and set(r.phases_ms) == {"h2d", "compute", "d2h"} for r in result.rows)
    gpu = result.engines[0].device["gpu"]
    assert gpu["name"] and gpu["compute_capability"] and gpu["name"] in result.table()
    graphs = profile([engine], batches=(4,), cuda_graphs=True, vs="none", **FAST)
    assert graphs.settings.cuda_graphs and graphs.rows[0].latency_ms.min > 0
