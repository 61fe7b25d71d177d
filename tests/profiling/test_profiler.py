"""The profiler: statistics against numpy, the interleaved timing loop on synthetic callables
with a known ratio, measured throughput (back to back and in flight), one eager baseline per
run, per-layer timing, option errors and their old spellings, skipped batch sizes, the report's
files, and small real engines end to end. GPU paths (CUDA events, CUDA graphs, transfers,
device memory, cudnn.benchmark) run only where there is one."""

import csv
import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from densenet_trt import DenseNetTRTError
from densenet_trt.backends.onnxruntime import _onnxruntime_nodes
from densenet_trt.engine.build import build
from densenet_trt.engine.load import Engine, load
from densenet_trt.profiling.profiler import _baseline, _engine_info, _host, _settings, profile
from densenet_trt.profiling.throughput import BackToBack, Threads, stop_after
from densenet_trt.engine.manifest import PROFILE
from densenet_trt.profiling.report import EngineInfo, Layer, LayerTimes, ProfileReport, Row, Settings, Skipped
from densenet_trt.machine import MAX_THREADS
from densenet_trt.engine.spec import Precision
from densenet_trt.profiling.report_text import SPEEDUPS, figure
from densenet_trt.profiling.stats import MIN_SAMPLES, TOO_FEW, paired_speedup, summarize
from densenet_trt.profiling.timing import cpu_timer, cuda_timer, interleave

SMALL = {"block_config": (2, 2, 2)}
FAST = {"iterations": 3, "warmup_iterations": 1, "gap": 0.0}


def small_build(tmp, **kwargs):
    kwargs.setdefault("backend", "onnxruntime")
    return build("densenet_bc100_k12", batch="1:2:4", output=tmp, overrides=SMALL, **kwargs)


@pytest.fixture(scope="module")
def engine_path(shared_engine):
    return shared_engine.path


@pytest.fixture(scope="module")
def openvino_path(small_engine):
    return small_engine("openvino", "fp32").path  # SMALL, batch 1:4:8, shared with tests/engine/test_build.py


@pytest.fixture(scope="module")
def report(engine_path):
    lines = []
    result = profile([engine_path], batch_size=(1, 4, 8), progress=lines.append, **FAST)
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
        build_seconds=40.0, load_seconds=0.5, eager=["fp32", "fp16"], notes=[], baseline="densenet121 3x224x224 cuda",
    )
    phases = {k: summarize([0.1, 0.2, 0.3] * 4) for k in ("h2d", "compute", "d2h")}
    base = "densenet121 3x224x224 cuda"
    rows = [
        Row(None, base, 1, "latency", 1, "eager", "fp32", "", summarize([4.0, 4.1, 4.2] * 4), phases, 250.0, None, {},
            900.0, 120.0),
        Row(None, base, 1, "latency", 1, "eager", "fp16", "", summarize([2.0, 2.1, 2.2] * 4), phases, 476.2, None, {},
            900.0, 80.0),
        Row(0, base, 1, "latency", 1, "engine", "fp16", "", summarize([1.0, 1.0, 2.0] * 4), phases, 1000.0, None,
            {"fp32": 4.0, "fp16": 2.0}, 900.0, 60.0),
        Row(0, base, 1, "throughput", 4, "engine", "fp16", "4 CUDA streams, one thread each",
            summarize([1.0] * 120), {}, 3000.0, 0.04, {}, 900.0, 70.0),
    ]
    layers = [LayerTimes(0, 1, "a profiler", "", 2.0, [Layer("conv0", "Convolution", 1.5), Layer("fc", "Gemm", 0.25)])]
    return ProfileReport(
        date_utc="2025-01-01T00:00:00+00:00",
        settings=Settings(batches=(1, 64), threads=4, cuda_graphs=True, include_transfers=True, gap=0.0),
        host={"cpu": "cpu", "cpu_count": 16, "threads": 4, "python": "3.12", "platform": "Linux",
              "torch": "2.14.1", "numpy": "2.3", "densenet-trt": "0.1.0",
              "eager": ["torch.no_grad()", "on CUDA cudnn.benchmark=True"]},
        engines=[engine], rows=rows, skipped=[Skipped(0, 64, "batch 64 is outside x's range 1..32")],
        layers=layers,
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
    assert summarize([10.0, 10.1, 9.9, 10.0] * 3).unstable is False
    assert summarize([10.0, 10.0, 10.0, 13.0] * 3).unstable is True
    latency = synthetic_report().table().split("Throughput:")[0]
    rows = {line.split("|")[3].strip(): line for line in latency.splitlines() if line.startswith("| ")}
    assert "unstable, rerun" in rows["engine fp16"]  # 1, 1, 2 ms
    assert "unstable" not in rows["eager fp32"]  # 4.0, 4.1, 4.2 ms


def one_sample_report() -> ProfileReport:
    """The synthetic report with a latency row of one sample, as `profile --batch-size 1,8
    --duration 2` timed batch 8 once (issue 23)."""
    report = synthetic_report()
    once = dataclasses.replace(report.rows[2], batch=8, latency_ms=summarize([94.12]), speedup={"fp32": 2.0})
    return dataclasses.replace(report, rows=[*report.rows, once])


def test_too_few_samples_give_no_cv_or_p99_and_every_row_says_its_samples(tmp_path):
    """One sample printed a CV of 0.0% and a p99, unflagged, with no sample count anywhere."""
    report = one_sample_report()
    text = report.table()
    latency, throughput = text.split("Latency:")[1].split("Throughput:")
    header, _, *rows = [line for line in latency.splitlines() if line.startswith("|")]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in rows[-1].split("|")]))
    assert (cells["n"], cells["cv"], cells["p99 ms"], cells["median ms"]) == ("1", TOO_FEW, TOO_FEW, "94.12")
    assert [c.strip() for c in rows[0].split("|")][4] == "12"
    assert "| n   |" in throughput and "| 120 |" in throughput
    assert f"- {TOO_FEW}: from fewer than {MIN_SAMPLES} samples no CV or p99 is given" in text
    data = report.to_dict()
    assert [(r["samples"], r["too_few_samples"], r["unstable"]) for r in data["rows"]] == [
        (12, False, False), (12, False, False), (12, False, True), (120, False, False), (1, True, None)]
    assert ProfileReport.from_dict(json.loads(json.dumps(data))) == report
    report.write_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        last = list(csv.DictReader(f))[-2]  # the skipped cell is the last
    assert (last["count"], last["too_few_samples"], last["cv"], last["p99_ms"]) == ("1", "True", "", "")
    assert float(last["median_ms"]) == 94.12


def test_latency_and_throughput_speedups_are_explained_once_in_the_report():
    """fp32 was 5.07x eager in latency while eager's throughput beat it, with nothing saying why."""
    text = one_sample_report().table()
    assert text.count(SPEEDUPS) == 1 and "- Speedups: " + SPEEDUPS in text
    alone = synthetic_report()
    latency_only = dataclasses.replace(alone, rows=[r for r in alone.rows if r.mode == "latency"])
    assert SPEEDUPS not in latency_only.table()


def test_plot_has_labelled_log_ticks_a_legend_off_the_lines_and_each_runners_requests_in_flight():
    """The log axis showed two labels at most, the legend sat over the lines, and engines at 2
    requests in flight were plotted against eager at 1 without saying so."""
    pytest.importorskip("matplotlib")
    chart = figure(one_sample_report())
    chart.canvas.draw()
    latency, throughput = chart.axes
    low, high = latency.get_ylim()
    labels = [t.get_text() for t in latency.get_yticklabels() if low <= t.get_position()[1] <= high]
    assert len([t for t in labels if t]) >= 3, labels
    (legend,) = chart.legends
    box = legend.get_window_extent()
    assert not any(box.overlaps(axes.get_window_extent()) for axes in chart.axes)
    assert [t.get_text() for t in legend.get_texts()] == [
        "eager fp32 (densenet121 3x224x224 cuda), 1 in flight", "eager fp16 (densenet121 3x224x224 cuda), 1 in flight",
        "[0] x, 4 in flight"]
    assert SPEEDUPS[1:40] in chart.get_suptitle().replace("\n", " ")
    assert [len(line.get_xdata()) for line in latency.get_lines()][-3:] == [2, 2, 1]  # no p99 of 1 sample


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
    ({"warmup_iterations": 1, "warmup_duration": 1.0}, "not both"),
    ({"warmup_iterations": -1}, "warmup_iterations must be a count"),
    ({"batch_size": ()}, "batch_size must be positive"),
    ({"batch_size": (0,)}, "batch_size must be positive"),
    ({"batch_size": 0}, "batch_size must be positive"),
    ({"vs": "onnx"}, "vs must be 'eager' or 'none'"),
    ({"threads": 0}, f"threads must be an integer from 1 to {MAX_THREADS}"),
    # Unbounded runs: these ran until killed.
    ({"duration": float("inf")}, "duration must be a positive number of seconds up to 3600, got inf"),
    ({"duration": float("nan")}, "duration must be a positive number of seconds up to 3600, got nan"),
    ({"duration": 3600.5}, "duration must be a positive number of seconds up to 3600, got 3600.5"),
    ({"warmup_duration": float("inf")}, "warmup_duration must be a positive number of seconds up to 3600, got inf"),
    ({"warmup_duration": float("nan")}, "warmup_duration must be a positive number of seconds up to 3600, got nan"),
    ({"iterations": 10**6 + 1}, "iterations must be a positive integer up to 1,000,000, got 1000001"),
    ({"warmup_iterations": 10**6 + 1}, "warmup_iterations must be a count from 0 to 1,000,000, got 1000001"),
    ({"gap": float("inf")}, "gap must be 0 to 10 seconds, got inf"),
    ({"gap": float("nan")}, "gap must be 0 to 10 seconds, got nan"),
    ({"mode": "fast"}, "mode must be one of both, latency, throughput, got 'fast'"),
    ({"requests": 0}, "requests must be an integer from 1 to 64, got 0"),
    ({"requests": 65}, "requests must be an integer from 1 to 64, got 65"),
    ({"layers": -1}, "layers must be a count from 0 to 1,000,000, got -1"),
])
def test_bad_options_are_refused_before_anything_runs(kwargs, message):
    with pytest.raises(DenseNetTRTError, match=message):
        profile(["does-not-matter"], **kwargs)


@pytest.mark.parametrize("old, new", [("batches", "batch_size"), ("warmup", "warmup_iterations"),
                                      ("warmup_time", "warmup_duration")])
def test_the_old_parameter_names_still_work_with_a_deprecation_warning(old, new):
    """The library takes the command line's names; the old ones are mapped, with a warning."""
    value = {"batches": (0,), "warmup": -1, "warmup_time": float("nan")}[old]
    with pytest.warns(DeprecationWarning, match=rf"profile\({old}=\.\.\.\) is deprecated; use {new}=\.\.\."), \
            pytest.raises(DenseNetTRTError, match=f"{new} must be"):
        profile(["does-not-matter"], **{old: value})
    with pytest.raises(TypeError, match="unexpected keyword argument 'batch'"):
        profile(["does-not-matter"], batch=1)


def test_progress_names_each_runner_once(engine_path):
    """Not "eager eager fp32 latency", "[0] engine fp32" or "[0] NAME and eager (...)"."""
    lines = []
    profile([engine_path], batch_size=2, mode="latency", progress=lines.append, **FAST)
    assert f"batch 2: [0] {Path(engine_path).name}; eager PyTorch: densenet_bc100_k12" in "\n".join(lines)
    measured = [line for line in lines if " latency: median " in line]
    assert [line.split(" latency:")[0] for line in measured] == ["  eager fp32", "  [0] fp32"], lines
    assert not any("eager eager" in line or "engine fp32" in line or "and eager (" in line for line in lines)


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
        profile([engine_path], batch_size=(8, 16), **FAST)


# --- a real engine end to end ----------------------------------------------------------------


def test_a_small_engine_against_eager(report, engine_path):
    # Latency (eager and the engine in the same rounds), then throughput: back to back, then 2 ONNX
    # Runtime sessions in flight (this run has 2 or more threads) or a note saying why not.
    in_flight = [] if torch.get_num_threads() < 2 else [("throughput", 2, "engine")]
    assert [(r.batch, r.mode, r.requests, r.runner) for r in report.rows] == [
        (n, *cell) for n in (1, 4) for cell in [("latency", 1, "eager"), ("latency", 1, "engine"),
                                                ("throughput", 1, "eager"), ("throughput", 1, "engine"),
                                                *in_flight]]
    for r in report.rows:
        assert r.latency_ms.count == 3 and r.latency_ms.min > 0 and r.phases_ms == {}
        assert r.peak_host_rss_mb > 0 and r.device_mb is None and r.precision == "fp32"
        assert r.engine == (None if r.runner == "eager" else 0)
        if r.mode == "latency":
            assert r.images_per_s == pytest.approx(r.batch * 1000 / r.latency_ms.median) and r.wall_s is None
        else:  # measured: images completed / wall time, not derived from a latency
            assert r.images_per_s == pytest.approx(3 * r.batch / r.wall_s)
            assert r.wall_s >= 0.95 * sum(r.latency_ms.mean for _ in range(3)) / 1000 / r.requests
        paired = r.mode == "latency" and r.runner == "engine"
        assert (set(r.speedup) == {"fp32"} and r.speedup["fp32"] > 0) if paired else r.speedup == {}
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
    latency = [r for r in result.rows if r.mode == "latency"]
    assert [r.label for r in latency] == ["eager fp32", "eager bf16", "engine bf16"]
    assert set(latency[-1].speedup) == {"fp32", "bf16"}
    assert result.engines[0].notes == ["torchscript on the CPU: one request at a time (each call uses every CPU thread)"]


def test_eager_fp16_on_the_cpu_is_not_run_and_the_report_says_so(engine_path):
    real = load(engine_path)
    fp16 = Engine(real.path, dataclasses.replace(real.manifest, precision=Precision.FP16), real.runtime)
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
    assert data["schema"] == PROFILE.schema and data["schema_version"] == 2
    assert ProfileReport.from_dict(json.loads(json.dumps(data))) == original
    original.write_json(tmp_path / "r.json")
    assert ProfileReport.from_dict(json.loads((tmp_path / "r.json").read_text())) == original
    with pytest.raises(DenseNetTRTError, match="not a densenet-trt/profile version 2 report"):
        ProfileReport.from_dict({**data, "schema_version": 1})


def test_csv_has_a_row_per_engine_batch_and_runner(report, tmp_path):
    report.write_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["batch"], r["mode"], r["runner"], r["skipped"]) for r in rows] == [
        (str(r.batch), r.mode, r.runner, "") for r in report.rows] + [("8", "", "engine", report.skipped[0].reason)]
    eager, engine = rows[0], rows[1]
    assert float(eager["median_ms"]) == pytest.approx(report.rows[0].latency_ms.median)
    assert eager["engine"] == "" and eager["baseline"] == report.engines[0].baseline
    assert engine["speedup"] == f"fp32:{report.rows[1].speedup['fp32']:.4g}"
    assert engine["backend"] == "onnxruntime" and engine["threads"] == str(report.settings.threads)


def test_markdown_and_terminal_table(tmp_path):
    report = synthetic_report()
    report.write_markdown(tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert text.startswith("# densenet-trt profile\n") and text.endswith(report.table())
    latency, throughput = text.split("Latency: one request at a time")[1].split("Throughput: measured")
    table = [line for line in latency.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 and len({len(line) for line in table}) == 1
    assert "| speedup vs eager (paired)" in table[0] and table[0].endswith("| device MiB |")
    assert "| 4.00x vs fp32, 2.00x vs fp16 | 60" in table[-1]
    assert "| [0]    | 1     | engine fp16 | 4         | 3000.0   | 120 | 0.04   |" in throughput
    assert throughput.splitlines()[2].endswith("| device MiB |") and "| 70         |" in throughput
    assert "NVIDIA H100 (compute capability 9.0, driver 580.1, CUDA 13.0)" in text
    assert "CUDA graphs on, transfers in" in text and "cudnn.benchmark=True" in text
    assert "h2d 0.200 ms, compute 0.200 ms, d2h 0.200 ms" in text
    assert "| conv0 | Convolution | 1.500 | 75.0% |" in text


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


# --- measured throughput, one eager baseline, the tail, per-layer timing ------------------------


def test_throughput_is_images_over_wall_time_and_requests_in_flight_overlap():
    def wait():
        time.sleep(0.02)  # releases the GIL, as a runtime's call does

    one, wall_one = BackToBack(wait).run(stop_after(None, 0.3))
    two, wall_two = Threads([wait, wait], "2 threads").run(stop_after(None, 0.3))
    assert all(t >= 20 for t in one + two) and wall_one >= sum(one) / 1000
    assert len(two) / wall_two >= 1.6 * len(one) / wall_one  # two in flight: about twice the rate
    counted, _ = Threads([wait, wait], "").run(stop_after(7, None))
    assert len(counted) == 7


def test_default_is_a_duration_and_a_short_run_says_its_p99_is_the_max(report):
    settings = _settings((1,), None, None, None, None, "eager", None, False, False, 0.2, "both", None, 0)
    assert (settings.duration, settings.iterations, settings.warmup) == (5.0, None, 3)
    assert "each measurement 5 s after 3 warm-up rounds" in dataclasses.replace(report, settings=settings).table()
    assert f"{TOO_FEW}: from fewer than" in report.table()  # 3 samples a row: no p99 at all
    text = synthetic_report().table()  # 12 samples a latency row
    assert "* p99 of fewer than 100 samples is (nearly) the largest sample" in text
    assert all(line.count("*") == 1 for line in text.split("Throughput:")[0].splitlines() if line.startswith("| [0]"))
    assert "| 1.000  | 4 CUDA streams" in text.split("Throughput:")[1]  # 120 samples


def test_engines_of_one_model_share_one_eager_baseline(engine_path, openvino_path):
    """Eager was timed again next to each engine, so two engines of one model were compared
    with two different eager figures; now one eager row per batch and device, in the same
    rounds as both engines, each engine paired with the same eager samples."""
    result = profile([engine_path, openvino_path], batch_size=(1, 2), mode="latency", **FAST)
    assert [(r.batch, r.engine, r.label) for r in result.rows] == [
        (n, *row) for n in (1, 2) for row in [(None, "eager fp32"), (0, "engine fp32"), (1, "engine fp32")]]
    assert result.engines[0].baseline == result.engines[1].baseline == "densenet_bc100_k12 {\"block_config\": [2, 2, 2]} 3x32x32 cpu"
    assert all(r.speedup["fp32"] > 0 for r in result.rows if r.engine is not None)
    assert "speedup vs eager (paired)" in result.table() and "vs this" not in result.table()
    real = load(engine_path)
    other = dataclasses.replace(real.manifest, model=dataclasses.replace(real.manifest.model, overrides={}))
    assert _baseline(Engine(real.path, other, real.runtime)) == "densenet_bc100_k12 3x32x32 cpu"


def test_openvino_keeps_requests_in_flight_on_a_throughput_compiled_model(openvino_path):
    result = profile([openvino_path], mode="throughput", requests=2, vs="none", iterations=4, warmup_iterations=1, gap=0.0)
    back_to_back, queue = result.rows
    assert (back_to_back.requests, back_to_back.how) == (1, "back to back")
    assert queue.requests == 2 and queue.how.startswith("OpenVINO AsyncInferQueue, THROUGHPUT hint, ")
    assert queue.latency_ms.count == 4 and queue.images_per_s == pytest.approx(4 / queue.wall_s)
    assert result.engines[0].notes == [
        "throughput with requests in flight: a second compiled model of the same IR and settings with "
        "PERFORMANCE_HINT=THROUGHPUT (the engine's own is compiled for LATENCY)"]


def test_slowest_layers_from_the_runtimes_profiler(engine_path, openvino_path):
    result = profile([engine_path, openvino_path], mode="latency", layers=3, **FAST)
    assert [(t.engine, t.batch) for t in result.layers] == [(0, 1), (1, 1)]
    for times, source in zip(result.layers, ("ONNX Runtime profiler", "OpenVINO performance counters")):
        assert times.source.startswith(source) and len(times.layers) == 3 and times.note == ""
        ms = [layer.ms for layer in times.layers]
        assert ms == sorted(ms, reverse=True) and ms[-1] > 0 and times.total_ms >= sum(ms)
        assert f"the 3 slowest layers ({source}" in result.table()


def test_onnxruntime_trace_is_averaged_over_the_runs_after_warmup():
    def run(ts, conv_us):
        return [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 100},
                {"cat": "Node", "name": "conv_kernel_time", "ts": ts + 1, "dur": conv_us, "args": {"op_name": "Conv"}},
                {"cat": "Node", "name": "conv_fence_before", "ts": ts + 1, "dur": 5, "args": {"op_name": "Conv"}},
                {"cat": "Node", "name": "fc_kernel_time", "ts": ts + 2, "dur": 10, "args": {"op_name": "Gemm"}}]

    events = run(0, 9000) + run(1000, 3000) + run(2000, 5000)  # the first run is warm-up
    assert _onnxruntime_nodes(events, skip=1, calls=2) == pytest.approx({("conv", "Conv"): 4.0, ("fc", "Gemm"): 0.01})


def test_eager_is_tuned_as_users_run_it(engine_path, monkeypatch):
    """Issue 12 #13: eager on the GPU ran without cudnn.benchmark, which inflated the speedup.
    The flag is on while profile measures (it only matters on CUDA) and put back after; the
    report says how eager was tuned."""
    from densenet_trt.profiling import measure

    seen, real = [], measure.interleave

    def spy(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "interleave", spy)
    before = torch.backends.cudnn.benchmark
    result = profile([engine_path], mode="latency", **FAST)
    assert seen == [True] and torch.backends.cudnn.benchmark == before
    assert result.host["eager"] == ["torch.no_grad()"]
    gpu = synthetic_report().engines
    assert "cudnn.benchmark=True" in " ".join(_host(result.settings, gpu)["eager"])


# --- the command line: option names and their old spellings ------------------------------------


def cli(*args):
    from click.testing import CliRunner

    from densenet_trt.cli import main

    return CliRunner().invoke(main, ["profile", *map(str, args)])


def test_old_option_spellings_still_work_with_one_warning_line_each(engine_path):
    result = cli(engine_path, "--batch", "1", "--warmup", "0", "--iterations", "1", "--gap", "0",
                 "--mode", "latency", "--vs", "none", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["warning: --batch is deprecated; use --batch-size",
                                          "warning: --warmup is deprecated; use --warmup-iterations"]
    assert "after 0 warm-up rounds" in result.stdout
    both = cli(engine_path, "--batch", "1", "--batch-size", "1")
    assert both.exit_code == 2 and "--batch is the old spelling of --batch-size: give --batch-size only" in both.stderr


def test_new_option_names(engine_path):
    result = cli(engine_path, "--batch-size", "1,2", "--warmup-duration", "0.01", "--iterations", "2",
                 "--gap", "0", "--mode", "throughput", "--requests", "2", "--vs", "none", "--layers", "-q")
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert "0.01 s warm-up" in result.stdout and "Latency:" not in result.stdout
    assert "the 10 slowest layers" in result.stdout and "| 2         |" in result.stdout


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
    result = profile([engine], batch_size=(1, 4), include_transfers=True, **FAST)
    latency = [r for r in result.rows if r.mode == "latency"]
    assert [r.label for r in latency[:3]] == ["eager fp32", "eager fp16", "engine fp16"]
    assert all(set(r.phases_ms) == {"h2d", "compute", "d2h"} for r in latency)
    gpu = result.engines[0].device["gpu"]
    assert gpu["name"] and gpu["compute_capability"] and gpu["name"] in result.table()
    assert "cudnn.benchmark=True" in result.table()
    streams = [r for r in result.rows if r.mode == "throughput" and r.requests == 2]
    assert streams and all(r.how == "2 CUDA streams, one thread each" for r in streams)
    graphs = profile([engine], batch_size=(4,), cuda_graphs=True, vs="none", **FAST)
    assert graphs.settings.cuda_graphs and graphs.rows[0].latency_ms.min > 0


@pytest.mark.gpu
def test_device_memory_is_measured_per_runner(tmp_path):
    """Issue 12 #6: one torch.cuda.max_memory_allocated value was copied to every row. Each
    runner now has its own: resident after its load plus the peak of one call; an fp32 eager
    model holds twice the weights of its fp16 copy."""
    engine = small_build(tmp_path, backend="torchscript", device="cuda", precision="fp16").path
    result = profile([engine], batch_size=(4,), mode="latency", **FAST)
    memory = {r.label: r.device_mb for r in result.rows}
    assert all(v is not None and v > 0 for v in memory.values())
    assert len(set(memory.values())) == len(memory), memory


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_raw_plan_reports_its_slowest_layers_from_tensorrts_profiler(tmp_path):
    engine = small_build(tmp_path, backend="tensorrt", device="cuda", format="engine").path
    result = profile([engine], mode="latency", layers=3, **FAST)
    (times,) = result.layers
    assert times.source == "TensorRT IProfiler" and len(times.layers) == 3
    assert times.layers[0].ms >= times.layers[-1].ms > 0 and times.total_ms >= sum(t.ms for t in times.layers)


def test_requests_in_flight_warm_up_in_the_threads_that_are_measured():
    """PyTorch keeps some state per thread (cuDNN's benchmark cache of its v8 API): on an H200,
    warming up in other threads than the measured ones left 3.8 s of tuning in every timed
    request. Each thread warms its own worker, and the measured requests run in those threads."""
    warmed, measured = [], []
    phase = ["warm-up"]

    def call():
        (warmed if phase[0] == "warm-up" else measured).append(threading.current_thread())
        time.sleep(0.005)

    def stop_warming(started, seconds):
        if started >= 2:
            phase[0] = "measure" if len(warmed) >= 4 else phase[0]
            return True
        return False

    times, _ = Threads([call, call], "2 threads").measure(stop_warming, stop_after(6, None))
    assert len(times) == 6 and len(warmed) == 4
    assert set(warmed) == set(measured) and len(set(warmed)) == 2
