"""The int8 table of docs/benchmarks.md: densenet-trt's int8 engines beside the ecosystem's own
quantizers, timed in one interleaved run against floors measured in the same rounds, with their
top-1 on the digits test split and, from the runtimes' own reports, why each is as fast as it is.

    python scripts/int8_benchmark.py --out DIR [--model densenet121] [--rounds 30] [--seconds S]
                                     [--threads 2] [--samples 32]

Needs onnxruntime, openvino, nvidia-modelopt, scikit-learn (the digits) and NNCF:
pip install 'densenet-trt[cpu,test,bench]'. Writes DIR/int8_benchmark.json (and DIR/work, the
engines and models it built) and prints the tables as Markdown.

Speed: MODEL at batch 1 with random weights (speed is real, predictions are not), one process,
one run: each round calls every runner once, in turn, for ROUNDS rounds (or until SECONDS have
passed); the median of each runner's calls. THREADS threads everywhere (torch, ONNX Runtime's
intra-op threads, OpenVINO's INFERENCE_NUM_THREADS with PERFORMANCE_HINT LATENCY). The runners
are the engines and three matrix products: fp32 (torch.mm), bf16 (torch.mm) and int8
(torch._int_mm, int8 x int8 -> int32) of GEMM_SIZE^3; a floor is 2 x the model's multiply-adds
at that rate. Calibration: SAMPLES synthetic images, the same for every quantizer.

Accuracy: the same rows built again from the trained digits DenseNet-BC (examples/digits),
calibrated on its 300-image calibration split (every quantizer gets those images) and judged on
its 400-image test split. Every quantizer keeps the stem (the first convolution) in float, as
the digits model needs (examples/digits/README.md).

Rows: ONNX Runtime fp32, OpenVINO fp32 and bf16 (densenet-trt's engines); densenet-trt's
OpenVINO and ONNX Runtime int8 engines (its calibrate, then build); ONNX Runtime's own
quantize_static (after quant_pre_process; QDQ, uint8 activations, int8 per-channel weights)
and NNCF's quantize, both of the float ONNX in densenet-trt's ONNX Runtime fp32 engine; and
the two OpenVINO int8 models compiled with INFERENCE_PRECISION_HINT bf16 (the float layers
between the int8 convolutions in bf16).

Why: for each engine, OpenVINO's runtime model (each Convolution's runtimePrecision, Reorder
layers) or ONNX Runtime's optimized graph (op counts); and, in a separate run of a few calls
after the timed rounds, the time per layer type from OpenVINO's PERF_COUNT or ONNX Runtime's
profiler.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.metadata
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "digits"))

from densenet_trt import DenseNetTRTError, build, create_model, get_model_info, load, preset_stats  # noqa: E402
from densenet_trt.engine.artifact import atomic_dir, atomic_path  # noqa: E402
from densenet_trt.machine import device_info  # noqa: E402
from densenet_trt.engine.capture import INPUT_NAME  # noqa: E402
from densenet_trt.backends import BACKENDS  # noqa: E402
from densenet_trt.backends.onnxruntime import OPTIMIZATION  # noqa: E402
from densenet_trt.model.data import Dataset, Preprocessing, load_data, synthetic  # noqa: E402
from densenet_trt.int8.coverage import ORT_FLOAT, ORT_INT8, OV_INT8  # noqa: E402
from densenet_trt.int8.quantize import calibrate  # noqa: E402
from densenet_trt.engine.spec import Precision  # noqa: E402

DIGITS_MODEL = "densenet_bc40_k12"
DIGITS_CHECKPOINT = REPO / "tests" / "data" / "digits_densenet_bc40_k12.pth"
NNCF_MISSING = "NNCF is not installed: pip install 'densenet-trt[bench]' (or pip install 'nncf>=3.0')"
TOOL = "densenet-trt (ModelOpt max Q/DQ)"
TOOL_ORT = "densenet-trt (ONNX Runtime's placement, its max ranges)"
QUANTIZE_STATIC = "ORT quantize_static (QDQ, U8 act. / S8 per-channel weights)"
NNCF = "NNCF quantize"
PROFILE_CALLS = 5
# A pause before each timed call: ONNX Runtime's worker threads spin after a call, on the next runner's time.
GAP_S = 0.05
CONVS = ("Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger")
DEPTHWISE = "Conv, depthwise (a BatchNormalization)"


@dataclasses.dataclass
class Row:
    """One engine: how to call it on a float32 batch, and what the runtime reads to say why."""

    engine: str
    quantizer: str
    run: Callable[[np.ndarray], np.ndarray]
    file: Path  # the ONNX or OpenVINO IR the runtime loads
    ov_config: dict[str, Any] | None  # OpenVINO's compile config; None for ONNX Runtime


@dataclasses.dataclass
class Setup:
    """A model to build every row from, and the samples every quantizer calibrates on."""

    model: str
    weights: Path | None
    batch: str
    data: Dataset | Path
    images: np.ndarray  # the calibration samples, as quantize_static and NNCF get them
    preprocess: Preprocessing | None
    work: Path
    threads: int


def ov_config(hint: str, threads: int) -> dict[str, Any]:
    return {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}


def ov_runner(file: Path, config: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    import openvino

    request = openvino.Core().compile_model(str(file), "CPU", config).create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return run


def ort_options(threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, OPTIMIZATION)
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


def ort_runner(file: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), ort_options(threads), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def tool_row(setup: Setup, engine: str, backend: str, precision: Precision, calibration: Path | None = None,
             quantizer: str = "-") -> Row:
    """A row built and loaded by densenet-trt's own build and load."""
    artifact = build(setup.model, weights=setup.weights, backend=backend, precision=precision,
                     calibration=calibration, batch=setup.batch, threads=setup.threads, preprocess=setup.preprocess,
                     output=setup.work / "engines", name=f"{backend}-{precision}", force=True)
    loaded = load(artifact.path, threads=setup.threads)
    manifest = artifact.manifest
    config = None
    if backend == "openvino":
        config = {**manifest.backend_settings["config"], "INFERENCE_NUM_THREADS": setup.threads}
    return Row(engine, quantizer, lambda x: loaded.run(torch.from_numpy(x)).numpy(),
               artifact.path / manifest.main_file, config)


def stem_node(file: Path) -> str:
    """The name of the float ONNX graph's first convolution: the stem."""
    import onnx

    return next(n.name for n in onnx.load(str(file)).graph.node if n.op_type == "Conv")


class AxisWarnings(logging.Filter):
    """Drops and counts quantize_static's warning for each rank-1 (BatchNormalization) weight."""

    hidden = 0

    def filter(self, record: logging.LogRecord) -> bool:
        hide = "is out-of-range for weight" in record.getMessage()
        self.hidden += hide
        return not hide


def quantize_static(setup: Setup, float_onnx: Path, progress: Callable[[str], None]) -> Path:
    """ONNX Runtime's own static quantization of the tool's float ONNX capture."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = iter(setup.images)

        def get_next(self):
            sample = next(self.samples, None)
            return None if sample is None else {INPUT_NAME: sample[None]}

    prepared, output = setup.work / "float-preprocessed.onnx", setup.work / "ort-quantize-static.onnx"
    with atomic_path(prepared, force=True) as tmp:
        quant_pre_process(str(float_onnx), str(tmp))
    axis = AxisWarnings()
    logging.getLogger().addFilter(axis)
    try:
        with atomic_path(output, force=True) as tmp:
            ort_quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                                nodes_to_exclude=[stem_node(float_onnx)])
    finally:
        logging.getLogger().removeFilter(axis)
    progress(f"quantize_static: {axis.hidden} warnings 'Axis 1 is out-of-range for weight' (rank-1 "
             "BatchNormalization weights, quantized per tensor) not shown")
    return output


def nncf_quantize(setup: Setup, float_onnx: Path) -> Path:
    """NNCF's quantization of the OpenVINO model read from the tool's float ONNX capture."""
    import nncf
    import openvino

    model = openvino.Core().read_model(str(float_onnx))
    stem = next(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    quantized = nncf.quantize(model, nncf.Dataset([sample[None] for sample in setup.images]),
                              subset_size=len(setup.images), ignored_scope=nncf.IgnoredScope(names=[stem]))
    with atomic_dir(setup.work / "nncf", force=True) as folder:
        openvino.save_model(quantized, str(folder / "model.xml"), compress_to_fp16=False)
    return setup.work / "nncf" / "model.xml"


def make_rows(setup: Setup, progress: Callable[[str], None]) -> list[Row]:
    """Every row of the table, built from ``setup``."""
    ov, ort, t = "openvino", "onnxruntime", setup.threads
    progress(f"{setup.model}: float engines")
    rows = [tool_row(setup, "ONNX Runtime fp32", ort, Precision.FP32),
            tool_row(setup, "OpenVINO fp32", ov, Precision.FP32)]
    if Precision.BF16 in BACKENDS[ov].precisions("cpu"):
        rows.append(tool_row(setup, "OpenVINO bf16", ov, Precision.BF16))
    progress(f"{setup.model}: densenet-trt calibrate and int8 builds")
    cal = calibrate(setup.model, data=setup.data, weights=setup.weights, samples=None, exclude=("stem",),
                    batch_size=min(16, len(setup.images)), output=setup.work / "calibration", name="max",
                    force=True)
    tool_ov = tool_row(setup, "OpenVINO int8", ov, Precision.INT8, cal.path, TOOL)
    rows += [tool_ov, tool_row(setup, "ONNX Runtime int8", ort, Precision.INT8, cal.path, TOOL_ORT)]
    float_onnx = rows[0].file
    progress(f"{setup.model}: ONNX Runtime quantize_static")
    static = quantize_static(setup, float_onnx, progress)
    rows.append(Row("ONNX Runtime int8", QUANTIZE_STATIC, ort_runner(static, t), static, None))
    progress(f"{setup.model}: NNCF quantize")
    nncf_xml = nncf_quantize(setup, float_onnx)
    for hint, engine in (("f32", "OpenVINO int8"), ("bf16", "OpenVINO int8, bf16 hint")):
        if hint == "bf16":
            config = ov_config(hint, t)
            rows.append(Row(engine, TOOL, ov_runner(tool_ov.file, config), tool_ov.file, config))
        config = ov_config(hint, t)
        rows.append(Row(engine, NNCF, ov_runner(nncf_xml, config), nncf_xml, config))
    return rows


def interleaved(calls: list[Callable[[], Any]], rounds: int, seconds: float | None) -> list[list[float]]:
    """Seconds of each call, one call of each per round, for ``rounds`` rounds or until
    ``seconds`` have passed (at least one round), GAP_S apart; one untimed call of each first."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    end = time.perf_counter() + (seconds if seconds else float("inf"))
    for done in range(rounds):
        if done and time.perf_counter() >= end:
            break
        for call, spent in zip(calls, times):
            time.sleep(GAP_S)
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return times


def gemms(size: int) -> list[tuple[str, str, Callable[[], Any]]]:
    """The floors' products: (name, what its rate counts, call)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a16, b16 = a.bfloat16(), b.bfloat16()
    a8, b8 = (torch.randint(-128, 128, (size, size), dtype=torch.int8) for _ in range(2))
    return [("fp32 sgemm (torch.mm)", "GFLOP/s", lambda: torch.mm(a, b)),
            ("bf16 gemm (torch.mm)", "GFLOP/s", lambda: torch.mm(a16, b16)),
            ("int8 gemm (torch._int_mm, int32 out)", "GOP/s", lambda: torch._int_mm(a8, b8))]


def floors(products, times: list[list[float]], size: int, flop: float) -> list[dict[str, Any]]:
    result = []
    for (name, unit, _), spent in zip(products, times):
        rate = 2 * size**3 / statistics.median(spent) / 1e9
        result.append({"gemm": name, "rate": rate, "unit": unit, "floor_ms": flop / rate / 1e6})
    return result


def ov_why(row: Row, x: np.ndarray) -> dict[str, Any]:
    """OpenVINO's runtime model (convolution precisions, reorders) and, with PERF_COUNT on,
    the time per layer type over a few calls."""
    import openvino

    compiled = openvino.Core().compile_model(str(row.file), "CPU", {**row.ov_config, "PERF_COUNT": True})
    convs: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        layers[kind] += 1
        if kind == "Convolution":
            convs[info["runtimePrecision"].astype(str)] += 1
    request = compiled.create_infer_request()
    request.infer({0: x})
    executed = []
    for _ in range(PROFILE_CALLS):
        request.infer({0: x})
        executed += [(layer.node_type, layer.real_time.total_seconds() * 1e3) for layer in request.profiling_info
                     if layer.status == layer.Status.EXECUTED]
    run = per_type(executed)
    reorders = next((t["layers"] for t in run if t["type"] == "Reorder"), 0)
    return {"int8_convs": sum(convs[p] for p in OV_INT8), "convs": sum(convs.values()), "conversions": reorders,
            "conversions_are": f"Reorders run per call ({layers['Reorder']} in the runtime graph)",
            "conv_precisions": dict(convs), "layers": dict(layers), "per_type": run}


def per_type(executed: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Milliseconds and layers run per call, by type, from ``PROFILE_CALLS`` calls' records
    (type, ms), most time first."""
    ms: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for kind, spent in executed:
        ms[kind] += spent / PROFILE_CALLS
        count[kind] += 1
    total = sum(ms.values())
    return [{"type": kind, "ms": t, "share": t / total if total else 0.0, "layers": count[kind] // PROFILE_CALLS}
            for kind, t in ms.most_common()]


def ort_label(node) -> str:
    """A node's op type; ONNX Runtime's NCHWc optimizer turns a BatchNormalization it cannot fold
    into a grouped (depthwise) Conv, told apart here from the model's convolutions."""
    import onnx

    groups = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"]
    return DEPTHWISE if node.op_type == "Conv" and groups and groups[0] > 1 else node.op_type


def ort_why(row: Row, x: np.ndarray, threads: int) -> dict[str, Any]:
    """ONNX Runtime's optimized graph (op counts) and its profiler's time per op type over a
    few calls (the first, warm-up call left out)."""
    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        options = ort_options(threads)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = onnxruntime.InferenceSession(str(row.file), options, providers=["CPUExecutionProvider"])
        labels = {n.name: ort_label(n) for n in onnx.load(options.optimized_model_filepath).graph.node}
        ops = collections.Counter(labels.values())
        feed = {session.get_inputs()[0].name: x}
        for _ in range(PROFILE_CALLS + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    executed = [(labels.get(e["name"].removesuffix("_kernel_time"), e["args"]["op_name"]), e["dur"] / 1e3)
                for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= runs[1]]
    int8 = sum(ops[k] for k in ORT_INT8 if k in CONVS)
    return {"int8_convs": int8, "convs": sum(ops[k] for k in CONVS),
            "conversions": ops["QuantizeLinear"] + ops["DequantizeLinear"],
            "conversions_are": "QuantizeLinear + DequantizeLinear nodes", "float_kernels": sum(ops[k] for k in ORT_FLOAT),
            "ops": dict(ops.most_common()), "per_type": per_type(executed)}


def speed(args: argparse.Namespace, work: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """The timed rounds on ``args.model`` at batch 1, then each row's report."""
    info = get_model_info(args.model)
    channels = create_model(args.model).in_channels
    data = synthetic(args.samples, channels, info.image_size, seed=0)
    setup = Setup(args.model, None, "1", data, data.images, None, work / "speed", args.threads)
    rows = make_rows(setup, progress)
    x = np.random.default_rng(1).standard_normal((1, channels, info.image_size, info.image_size), dtype=np.float32)
    products = gemms(args.gemm_size)
    calls = [call for _, _, call in products] + [lambda row=row: row.run(x) for row in rows]
    progress(f"timing {len(calls)} runners, {args.rounds} rounds")
    times = interleaved(calls, args.rounds, args.seconds)
    flop = 2 * preset_stats(args.model)["macs"]
    measured = floors(products, times[:len(products)], args.gemm_size, flop)
    progress("reading the runtimes' reports (separate short runs)")
    result = []
    for row, spent in zip(rows, times[len(products):]):
        why = ov_why(row, x) if row.ov_config is not None else ort_why(row, x, args.threads)
        median = statistics.median(spent) * 1e3
        why["conv_ms"] = sum(t["ms"] for t in why["per_type"] if t["type"] in CONVS + ("Convolution",))
        result.append({"engine": row.engine, "quantizer": row.quantizer, "median_ms": median,
                       "calls": len(spent), "vs_fp32_floor": median / measured[0]["floor_ms"],
                       "vs_int8_floor": median / measured[2]["floor_ms"], "why": why})
    return {"floors": measured, "flop": flop, "rounds": len(times[0]), "rows": result}


def digits_top1(work: Path, threads: int, progress: Callable[[str], None]) -> tuple[float, list[float]]:
    """Top-1 on the digits test split: eager float, and each row built from the digits model."""
    from digits import MEAN, STD, load_split, write_npz

    work.mkdir(parents=True, exist_ok=True)
    write_npz("calibration", str(work / "calibration.npz"))
    images, labels = load_split("test")
    calibration = load_data(work / "calibration.npz").images
    setup = Setup(DIGITS_MODEL, DIGITS_CHECKPOINT, "1:100:100", work / "calibration.npz", calibration,
                  Preprocessing(32, 32, (MEAN,), (STD,)), work, threads)
    rows = make_rows(setup, progress)
    net = create_model(DIGITS_MODEL, weights=DIGITS_CHECKPOINT).eval()

    def top1(run: Callable[[np.ndarray], Any]) -> float:
        logits = [np.asarray(run(images[i:i + 100])) for i in range(0, len(images), 100)]
        return float((np.concatenate(logits).argmax(1) == labels).mean())

    with torch.no_grad():
        eager = top1(lambda x: net(torch.from_numpy(x)).numpy())
    return eager, [top1(row.run) for row in rows]


def markdown(report: dict[str, Any]) -> str:
    """The tables of ``report`` as Markdown."""
    s = report["speed"]
    fp32, _, int8 = s["floors"]
    lines = [f"{report['model']}, batch 1, {report['threads']} threads, random weights and "
             f"{report['calibration_samples']} synthetic calibration images, {s['rounds']} rounds "
             f"(median ms); digits top-1 on {report['digits']['test_images']} test images "
             f"(eager float {report['digits']['float_top1']:.2%}); the stem in float for every quantizer.", "",
             "| gemm | rate | floor ms |", "| --- | --- | --- |"]
    lines += [f"| {f['gemm']} | {f['rate']:.0f} {f['unit']} | {f['floor_ms']:.2f} |" for f in s["floors"]]
    lines += [f"| issue 13's int8 floor: fp32 floor / 4 | | {fp32['floor_ms'] / 4:.2f} |", "",
              "| engine | quantizer | median ms | vs fp32 floor | vs int8 floor | digits top-1 | int8 convs / convs "
              "| conversions |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in s["rows"]:
        why = row["why"]
        lines.append(f"| {row['engine']} | {row['quantizer']} | {row['median_ms']:.2f} | {row['vs_fp32_floor']:.2f}x | "
                     f"{row['vs_int8_floor']:.2f}x | {row['digits_top1']:.2%} | {why['int8_convs']} / {why['convs']} | "
                     f"{why['conversions']} {why['conversions_are']} |")
    for row in s["rows"]:
        if "int8" not in row["engine"]:
            continue
        why = row["why"]
        lines += ["", f"### {row['engine']}, {row['quantizer']}: ms per call by layer type "
                  f"({PROFILE_CALLS} profiled calls; median of the timed run {row['median_ms']:.2f} ms)", "",
                  f"Convolutions alone: {why['conv_ms']:.2f} ms per call, {why['conv_ms'] / int8['floor_ms']:.2f}x "
                  "the int8 floor.", "",
                  "| layer type | ms per call | share | layers run |", "| --- | --- | --- | --- |"]
        lines += [f"| {t['type']} | {t['ms']:.2f} | {t['share']:.0%} | {t['layers']} |" for t in why["per_type"]]
    return "\n".join(lines)


def check_args(args: argparse.Namespace) -> None:
    """Every refusal, one line each, before any work."""
    for name in ("rounds", "threads", "samples", "gemm_size"):
        if getattr(args, name) < 1:
            raise DenseNetTRTError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.seconds is not None and args.seconds <= 0:
        raise DenseNetTRTError(f"--seconds must be positive, got {args.seconds}")
    get_model_info(args.model)
    for name in ("openvino", "onnxruntime"):
        state = BACKENDS[name].available()
        if not state.ok:
            raise DenseNetTRTError(state.message(name))
    try:
        import nncf  # noqa: F401
    except ImportError:
        raise DenseNetTRTError(NNCF_MISSING) from None
    if args.out.exists() and not args.out.is_dir():
        raise DenseNetTRTError(f"--out {args.out} is a file; give a folder")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for int8_benchmark.json and the work files")
    parser.add_argument("--model", default="densenet121", help="the preset timed (default densenet121)")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--seconds", type=float, default=None, help="stop the rounds after this long (default: no limit)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    parser.add_argument("--samples", type=int, default=32, help="synthetic calibration images for speed (default 32)")
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the floors' square products (default 2048)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        check_args(args)
        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        progress = lambda line: print(f"[{time.perf_counter() - start:6.0f} s] {line}", file=sys.stderr, flush=True)  # noqa: E731
        args.out.mkdir(parents=True, exist_ok=True)
        result = speed(args, args.out / "work", progress)
        float_top1, top1 = digits_top1(args.out / "work" / "digits", args.threads, progress)
        for row, value in zip(result["rows"], top1):
            row["digits_top1"] = value
        versions = {m: importlib.metadata.version(m) for m in ("torch", "onnxruntime", "openvino", "nncf", "nvidia-modelopt")}
        report = {"model": args.model, "batch": 1, "threads": args.threads, "weights": "random",
                  "machine": device_info("cpu"), "versions": versions,
                  "speed": result, "digits": {"model": DIGITS_MODEL, "float_top1": float_top1, "test_images": 400},
                  "calibration_samples": args.samples, "wall_s": time.perf_counter() - start}
        with atomic_path(args.out / "int8_benchmark.json", force=True) as tmp:
            tmp.write_text(json.dumps(report, indent=1))
        progress(f"wrote {args.out / 'int8_benchmark.json'}")
    except DenseNetTRTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
