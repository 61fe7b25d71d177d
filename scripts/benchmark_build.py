"""Speed of every CPU backend and precision against eager PyTorch, measured side by side.

Builds densenet121 (random weights: speed does not depend on them) with each backend and
precision usable here, then times each engine interleaved with eager float32 PyTorch on the
same input (A B A B ...), so drift of a shared machine hits both alike; the speedup is the
median of the paired ratios. Each timed call is preceded by a short pause (--gap): PyTorch's
OpenMP threads spin-wait after eager runs and would otherwise steal the cores from the next
engine call, which a process running only the engine never sees. Writes a JSON file and
prints a Markdown table.

    python scripts/benchmark_build.py --out bench.json [--model densenet121] [--batch 1 32] [--iterations 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

import densenet_trt
from densenet_trt.artifact import cpu_name
from densenet_trt.backends import BACKENDS
from densenet_trt.build import build, load, reference_model
from densenet_trt.export import example_input


def timed(fn, x, gap: float) -> float:
    time.sleep(gap)
    start = time.perf_counter_ns()
    fn(x)
    return (time.perf_counter_ns() - start) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds of pause before each timed call")
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "openvino", "inductor", "torchscript"])
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    eager = reference_model(args.model, None, None, 0, {})
    size = densenet_trt.get_model_info(args.model).image_size
    batch_range = f"{min(args.batch)}:{min(args.batch)}:{max(args.batch)}"
    conditions = {
        "model": args.model, "image_size": size, "weights": "random (seed 0)",
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": threads,
        "engine_batch_range": batch_range, "iterations": args.iterations, "warmup": args.warmup,
        "gap_s": args.gap,
        "python": platform.python_version(), "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in args.backends:
            backend = BACKENDS[name]
            if not backend.available().ok:
                print(f"skip {name}: {backend.available().reason}", file=sys.stderr)
                continue
            for precision in backend.precisions("cpu"):
                print(f"building {name} {precision}", file=sys.stderr, flush=True)
                try:
                    artifact = build(args.model, backend=name, precision=precision, batch=batch_range,
                                     output=out, seed=0)
                except densenet_trt.DenseNetTRTError as e:
                    rows.append({"backend": name, "precision": precision, "error": str(e)})
                    print(f"  failed: {e}", file=sys.stderr)
                    continue
                engine = load(artifact.path)
                worst = max(artifact.manifest["accuracy"]["results"], key=lambda r: r["max_abs"])
                for n in args.batch:
                    x = example_input(n, size, seed=n)
                    with torch.no_grad():
                        for _ in range(args.warmup):
                            eager(x), engine(x)
                        pairs = [(timed(eager, x, args.gap), timed(engine, x, args.gap))
                                 for _ in range(args.iterations)]
                    eager_ms = statistics.median(a for a, _ in pairs)
                    engine_ms = statistics.median(b for _, b in pairs)
                    rows.append({
                        "backend": name, "precision": precision, "format": artifact.manifest["format"],
                        "batch": n, "engine_ms": round(engine_ms, 2), "eager_fp32_ms": round(eager_ms, 2),
                        "speedup": round(statistics.median(a / b for a, b in pairs), 2),
                        "images_per_s": round(n * 1000 / engine_ms, 1),
                        "build_s": artifact.manifest["build"]["seconds"],
                        "max_abs_vs_eager": worst["max_abs"], "min_cosine": worst["cosine"],
                    })
                    print(f"  batch {n}: {engine_ms:.1f} ms vs eager {eager_ms:.1f} ms "
                          f"({rows[-1]['speedup']}x)", file=sys.stderr, flush=True)
                del engine
    with open(args.out, "w") as f:
        json.dump({"conditions": conditions, "results": rows}, f, indent=2)
    print(f"{args.model}, {size}x{size}, {conditions['cpu']}, {threads} threads, torch {torch.__version__}, "
          f"median of {args.iterations} interleaved runs, {conditions['date_utc']}\n")
    print("| backend | precision | batch | engine ms | eager fp32 ms | speedup (median of paired ratios) | images/s | max abs vs eager |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | {r['precision']} | | failed: {r['error']} | | | | |")
        else:
            print(f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['engine_ms']} | {r['eager_fp32_ms']} "
                  f"| {r['speedup']}x | {r['images_per_s']} | {r['max_abs_vs_eager']:.2g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
