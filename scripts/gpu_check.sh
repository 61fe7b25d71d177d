#!/usr/bin/env bash
# The GPU path, checked on a machine with one NVIDIA GPU in at most 6 minutes, with the torch it
# has (2.11 or newer) and no package index: runs the package from this source tree (no install).
#
#   scripts/gpu_check.sh OUTDIR
#
# Rows, each ran (ok), skipped with its one-line reason, or failed with its first error line:
# 1. build + verify on CUDA (each build checked against eager PyTorch by its gate, then by
#    `verify`): torchscript fp32/fp16/bf16 and inductor fp16 (AOTInductor);
# 2. one profile of those that built (eager in the same rounds, batch 1 and 8, both modes), and
#    one latency profile at batch 8 with --cuda-graphs --include-transfers;
# 3. every TensorRT row whose module imports (exit status 0): `torch_tensorrt` -> backend
#    tensorrt fp32/fp16/bf16 in the exported-program and engine (raw plan) formats; `tensorrt`
#    -> backend tensorrt-onnx fp32/fp16; then a profile of those that built.
# Every step has a time limit and records its time; a step that would start after BUDGET
# seconds is skipped, so the whole run ends by then. Writes two files: OUTDIR/summary.md (the
# steps and the profile tables) and OUTDIR/gpu_check.tgz (steps.tsv, environment.txt, every
# step's log, the profile reports and each engine's manifest.json; no engine files). Exits 1
# when a step failed. Settings (environment): PYTHON (python3), MODEL (densenet121), BUDGET
# (seconds for all steps, 330).
set -u
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
model=${MODEL:-densenet121}
budget=${BUDGET:-330}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1  # a crash in native code leaves Python's stack in the step's log
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/logs" "$work/engines" "$work/manifests"
steps="$work/steps.tsv"
printf 'step\tstatus\tseconds\tdetail\n' > "$steps"

record() {  # step status seconds detail
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$steps"
    echo "== $1: $2 ($3 s) $4"
}

first_error() {  # log: its first error line, else its last non-empty line
    local line
    line=$(grep -m 1 -E '^(Error:|([A-Za-z_][A-Za-z0-9_.]*)?(Error|Exception)(:|$))' "$1")
    [ -n "$line" ] || line=$(grep -v '^\s*$' "$1" | tail -n 1)
    printf '%s' "$line" | cut -c1-200
}

run() {  # step limit command...: run it within its limit and the budget, record ok or failed
    local step=$1 limit=$2; shift 2
    local start=$SECONDS left=$((budget - SECONDS)) status log
    log="$work/logs/$(printf '%s' "$step" | tr -c 'A-Za-z0-9_.-' '_').log"
    if [ "$left" -lt 15 ]; then
        record "$step" skipped 0 "over the script's budget of $budget s"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    timeout "$limit" "$@" > "$log" 2>&1
    status=$?
    if [ "$status" -eq 0 ]; then
        record "$step" ok $((SECONDS - start)) "$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
        return 0
    fi
    local why; why=$(first_error "$log")
    [ "$status" -eq 124 ] && why="timed out after $limit s; $why"
    [ "$status" -gt 128 ] && [ "$status" -ne 124 ] && why="killed by SIG$(kill -l $((status - 128))); $why"
    record "$step" failed $((SECONDS - start)) "$why"
    return 1
}

"$py" - > "$work/environment.txt" 2>&1 <<'PY'
import importlib.util, platform, torch
import densenet_trt
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("densenet_trt from", densenet_trt.__file__)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), "compute capability", torch.cuda.get_device_capability())
for m in ("torch_tensorrt", "tensorrt", "onnxruntime", "matplotlib", "click"):
    print(m, "present" if importlib.util.find_spec(m) else "absent")
PY
cat "$work/environment.txt"

no_gpu=$("$py" -c 'import torch; print("" if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)")')
import_failure() {  # module: empty when it imports (exit status 0), else why not (or no GPU)
    [ -n "$no_gpu" ] && { echo "$no_gpu"; return; }
    local log="$work/logs/import_$1.log"
    "$py" -c "import $1" > "$log" 2>&1 && return
    echo "import $1 failed: $(first_error "$log")"
}
no_trt=$(import_failure torch_tensorrt)
no_trt_api=$(import_failure tensorrt)

candidates=("torchscript fp32 -" "torchscript fp16 -" "torchscript bf16 -" "inductor fp16 -")
for precision in fp32 fp16 bf16; do
    for fmt in exported-program engine; do
        candidates+=("tensorrt $precision $fmt")
    done
done
candidates+=("tensorrt-onnx fp32 -" "tensorrt-onnx fp16 -")
built=()
trt_built=()
for candidate in "${candidates[@]}"; do
    read -r backend precision fmt <<< "$candidate"
    name="$model-$backend-$precision"
    format=()
    if [ "$fmt" != - ]; then name="$name-$fmt"; format=(--format "$fmt"); fi
    reason=$no_gpu
    [ "$backend" = tensorrt ] && reason=$no_trt
    [ "$backend" = tensorrt-onnx ] && reason=$no_trt_api
    if [ -n "$reason" ]; then
        record "build $name" skipped 0 "$reason"
        continue
    fi
    limit=90
    [ "$backend" = torchscript ] || limit=200
    engine="$work/engines/$name"
    if run "build $name" "$limit" "$py" -m densenet_trt build --model "$model" --backend "$backend" --device cuda \
        --precision "$precision" --batch 1:8:8 "${format[@]}" --output "$work/engines" --name "$name" -q \
        && run "verify $name" 60 "$py" -m densenet_trt verify "$engine" --samples 16 -q; then
        if [ "${backend%-onnx}" = tensorrt ]; then trt_built+=("$engine"); else built+=("$engine"); fi
    fi
    [ -f "$engine/manifest.json" ] && cp "$engine/manifest.json" "$work/manifests/$name.json"
done

profile() {  # name engines... (then -- and the extra flags)
    local name=$1; shift
    local engines=() extra=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do engines+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; extra=("$@"); }
    if [ ${#engines[@]} -eq 0 ]; then
        record "$name" skipped 0 "${no_gpu:-no engine built (the build rows say why)}"
        return
    fi
    local plot=()
    "$py" -c 'import matplotlib' 2>/dev/null && plot=(--plot "$work/$name.png")
    run "$name" 120 "$py" -m densenet_trt profile "${engines[@]}" --duration 1 "${extra[@]}" \
        --json "$work/$name.json" --markdown "$work/$name.md" "${plot[@]}" -q
}
profile profile ${built[@]+"${built[@]}"} -- --batch-size 1,8
profile profile-cuda-graphs-transfers ${built[@]+"${built[@]}"} -- --batch-size 8 --mode latency --cuda-graphs \
    --include-transfers
profile profile-tensorrt ${trt_built[@]+"${trt_built[@]}"} -- --batch-size 1,8

{
    echo "# gpu_check: $model, $SECONDS s"
    echo
    sed 's/^/    /' "$work/environment.txt"
    echo
    echo "| step | status | seconds | detail |"
    echo "| --- | --- | --- | --- |"
    tail -n +2 "$steps" | awk -F '\t' '{gsub(/\|/, "\\|", $4); printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}'
    for report in "$work"/profile*.md; do
        [ -f "$report" ] || continue
        echo
        echo "## $(basename "$report" .md)"
        echo
        grep -v '^# ' "$report"
    done
} > "$work/summary.md"
cp "$work/summary.md" "$out/summary.md"
tar -czf "$out/gpu_check.tgz" -C "$work" --exclude=./engines .

echo
echo "== summary ($model; $(head -n 1 "$work/environment.txt")): $out/summary.md, $out/gpu_check.tgz"
column -t -s $'\t' "$steps" 2>/dev/null || cat "$steps"
! grep -q $'\tfailed\t' "$steps"
