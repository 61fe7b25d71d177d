#!/usr/bin/env bash
# The GPU path, checked on a machine with one NVIDIA GPU, in at most about 8 minutes, with the
# torch it has (2.11 or newer) and no package index: runs the package from this source tree.
#
#   scripts/gpu_check.sh OUTDIR
#
# 1. build + verify on CUDA: torchscript fp32/fp16/bf16 and inductor fp16 (AOTInductor builds
#    take minutes), each checked against eager PyTorch by the build's gate and by `verify`;
# 2. profile them at batch 1 and 8: CUDA events, then --cuda-graphs, then --include-transfers
#    (memory per row in the JSON);
# 3. every TensorRT path: where `import torch_tensorrt` works, fp32/fp16/bf16 in the
#    exported-program and raw plan (engine) formats; where `import tensorrt` works (TensorRT 10
#    or 11, as on a Jetson), backend tensorrt-onnx fp32/fp16 (a raw plan from the ONNX capture);
#    build + verify, and a profile of those that built.
# Each step that cannot run here is skipped with its one-line reason (on a machine without a
# GPU every GPU row is). Writes OUTDIR/steps.tsv, OUTDIR/profile*.{json,md,png}, the engines
# under OUTDIR/engines, and ends with one summary table. Settings (environment): PYTHON
# (python3), MODEL (densenet121), STEP_TIMEOUT (seconds per step, 300).
set -u
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
model=${MODEL:-densenet121}
limit=${STEP_TIMEOUT:-300}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out/engines"
steps="$out/steps.tsv"
printf 'step\tstatus\tseconds\tdetail\n' > "$steps"

record() {  # step status seconds detail
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$steps"
    echo "== $1: $2 ($3 s) $4"
}

run() {  # step command...: run it with the step limit, record ok or failed with its last line
    local step=$1; shift
    local start=$SECONDS log="$out/last.log"
    if timeout "$limit" "$@" > "$log" 2>&1; then
        record "$step" ok $((SECONDS - start)) "$(tail -n 1 "$log" | cut -c1-160)"
        return 0
    fi
    record "$step" failed $((SECONDS - start)) "$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-160)"
    return 1
}

"$py" - > "$out/environment.txt" 2>&1 <<'PY'
import importlib.util, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), "compute capability", torch.cuda.get_device_capability())
for m in ("torch_tensorrt", "tensorrt", "onnxruntime", "matplotlib", "click"):
    print(m, "present" if importlib.util.find_spec(m) else "absent")
PY
cat "$out/environment.txt"

no_gpu=$("$py" -c 'import torch; print("" if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)")')
import_failure() {  # module: why it does not import here (empty when it does), or no GPU
    [ -n "$no_gpu" ] && { echo "$no_gpu"; return; }
    "$py" -c "import $1" 2>&1 | grep -v '^\s*$' | tail -n 1 | cut -c1-160
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
    if run "build $name" "$py" -m densenet_trt build --model "$model" --backend "$backend" --device cuda \
        --precision "$precision" --batch 1:8:8 "${format[@]}" --output "$out/engines" --name "$name" --force -q \
        && run "verify $name" "$py" -m densenet_trt verify "$out/engines/$name" --samples 16 -q; then
        if [ "${backend%-onnx}" = tensorrt ]; then trt_built+=("$out/engines/$name"); else built+=("$out/engines/$name"); fi
    fi
done

profile() {  # suffix engines... (with the extra flags in $extra)
    local suffix=$1; shift
    local plot=()
    "$py" -c 'import matplotlib' 2>/dev/null && plot=(--plot "$out/profile$suffix.png")
    run "profile$suffix" "$py" -m densenet_trt profile "$@" --batch-size 1,8 --duration 5 "${extra[@]}" \
        --json "$out/profile$suffix.json" --markdown "$out/profile$suffix.md" "${plot[@]}" -q
}
for mode in "" "--cuda-graphs" "--include-transfers"; do
    suffix=${mode:+-${mode#--}}
    extra=(); [ -n "$mode" ] && extra=("$mode")
    if [ ${#built[@]} -eq 0 ]; then
        record "profile$suffix" skipped 0 "${no_gpu:-no engine built}"
    else
        profile "$suffix" "${built[@]}"
    fi
done
extra=()
if [ ${#trt_built[@]} -eq 0 ]; then
    record "profile-tensorrt" skipped 0 "${no_gpu:-no TensorRT engine built (the build rows say why)}"
else
    profile "-tensorrt" "${trt_built[@]}"
fi
rm -f "$out/last.log"

echo
echo "== summary ($model; $(head -n 1 "$out/environment.txt"))"
column -t -s $'\t' "$steps" 2>/dev/null || cat "$steps"
! grep -q $'\tfailed\t' "$steps"
