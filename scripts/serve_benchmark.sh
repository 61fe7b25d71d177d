#!/usr/bin/env bash
# The serving benchmark of docs/benchmarks.md: one engine served by `densenet-trt serve` (a real
# Triton server through PyTriton), driven by `densenet-trt loadtest` at a sweep of concurrencies
# against the same engine in-process, then, where it runs, by Triton's perf_analyzer at the same
# concurrencies, and both side by side in OUT/compare.md.
#
#   scripts/serve_benchmark.sh [ENGINE] [OUT]     # in the serve environment (docs/deploy.md)
#
# ENGINE (default engines/densenet_bc40_k12-onnxruntime-fp32-b1-8-32-32, built if absent); OUT
# (default serve-benchmark). Environment: CONCURRENCY (1,2,4,8,16), DURATION (seconds per step,
# 10), BATCH (images per request, 1), HTTP_PORT/GRPC_PORT/METRICS_PORT (8000/8001/8002),
# PERF_ANALYZER (the binary; default: the one in the tritonclient 2.51.0 wheel, fetched into
# OUT/perf_analyzer with libcudart.so.12 from nvidia-cuda-runtime-cu12; it needs Debian's
# libb64-0d: apt-get install libb64-0d). Run it on a quiet machine: the numbers are the docs'.
set -euo pipefail
ENGINE=${1:-engines/densenet_bc40_k12-onnxruntime-fp32-b1-8-32-32}
OUT=${2:-serve-benchmark}
CONCURRENCY=${CONCURRENCY:-1,2,4,8,16}
DURATION=${DURATION:-10}
BATCH=${BATCH:-1}
HTTP_PORT=${HTTP_PORT:-8000} GRPC_PORT=${GRPC_PORT:-8001} METRICS_PORT=${METRICS_PORT:-8002}
MODEL=$(basename "$ENGINE")

if [ ! -e "$ENGINE" ]; then
    densenet-trt build --model densenet_bc40_k12 --backend onnxruntime --batch 1:8:32 \
        --output "$(dirname "$ENGINE")" --name "$MODEL"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

densenet-trt serve "$ENGINE" --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" \
    --metrics-port "$METRICS_PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER || true' EXIT
python - "$HTTP_PORT" "$MODEL" "$SERVER" <<'EOF'
import os, sys, time, urllib.request
port, model, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(600):
    os.kill(pid, 0)  # the server is still there
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model}/ready", timeout=2):
            sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("the server was not ready in 5 minutes; see serve.log")
EOF

densenet-trt loadtest "grpc://127.0.0.1:$GRPC_PORT" --model "$MODEL" --engine "$ENGINE" \
    --concurrency "$CONCURRENCY" --batch-size "$BATCH" --duration "$DURATION" --force \
    --json "$OUT/loadtest.json" --csv "$OUT/loadtest.csv" --markdown "$OUT/loadtest.md" --plot "$OUT/loadtest.png"

PA=${PERF_ANALYZER:-}
if [ -z "$PA" ]; then
    mkdir -p "$OUT/perf_analyzer"
    pip download --quiet --no-deps tritonclient==2.51.0 nvidia-cuda-runtime-cu12 -d "$OUT/perf_analyzer"
    for wheel in "$OUT"/perf_analyzer/*.whl; do python -m zipfile -e "$wheel" "$OUT/perf_analyzer/x"; done
    PA="$OUT/perf_analyzer/x/tritonclient-2.51.0.data/data/bin/perf_analyzer"
    chmod +x "$PA"
    export LD_LIBRARY_PATH="$OUT/perf_analyzer/x/nvidia/cuda_runtime/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if ldd "$PA" | grep -q "not found"; then
    echo "perf_analyzer cannot run here (missing: $(ldd "$PA" | grep 'not found' | awk '{print $1}' | xargs));" \
         "apt-get install libb64-0d, or set PERF_ANALYZER; loadtest's results are in $OUT" >&2
    exit 0
fi
for c in ${CONCURRENCY//,/ }; do
    "$PA" -m "$MODEL" -u "127.0.0.1:$GRPC_PORT" -i grpc -b "$BATCH" --concurrency-range "$c:$c" \
        --measurement-interval $((DURATION * 1000)) -f "$OUT/perf_analyzer-c$c.csv" > "$OUT/perf_analyzer-c$c.log" \
        || echo "perf_analyzer at concurrency $c failed: see $OUT/perf_analyzer-c$c.log" >&2
done

python - "$OUT" <<'EOF'
import csv, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
report = json.loads((out / "loadtest.json").read_text())
lines = ["| concurrency | runner | images/s | p50 ms | p90 ms | p99 ms | queue ms | compute ms |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
ms = lambda v: "" if v is None else f"{v:.2f}"
for r in report["rows"]:
    t = r["latency_ms"]
    lines.append(f"| {r['concurrency']} | loadtest {r['runner']} | {r['images_per_s']:.1f} | {ms(t['median'])} | "
                 f"{ms(t['p90'])} | {ms(t['p99'])} | {ms(r['queue_ms'])} | {ms(r['compute_ms'])} |")
for c in report["settings"]["concurrencies"]:
    path = out / f"perf_analyzer-c{c}.csv"
    if path.exists():
        (p,) = list(csv.DictReader(path.open()))
        us = lambda k: f"{float(p[k]) / 1000:.2f}"
        compute = sum(float(p[k]) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output"))
        lines.append(f"| {c} | perf_analyzer | {float(p['Inferences/Second']):.1f} | {us('p50 latency')} | "
                     f"{us('p90 latency')} | {us('p99 latency')} | {us('Server Queue')} | {compute / 1000:.2f} |")
(out / "compare.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
