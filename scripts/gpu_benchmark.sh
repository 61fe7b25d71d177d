#!/usr/bin/env bash
# Build densenet121 with every backend that runs on this machine, in fp32, fp16/bf16 and int8,
# and profile each at batch 1 and 32 against eager PyTorch. Runs the package from this source tree
# (PYTHONPATH, no pip, no network) on the Python found here, which needs PyTorch, click and
# numpy (onnx, onnxscript and onnxruntime add the onnxruntime backend; matplotlib the plot).
#
#   scripts/gpu_benchmark.sh OUTDIR
#
# Writes OUTDIR/profile.json, profile.md, profile.png, environment.txt, matmul.json (the
# machine's measured matrix-multiply rate, the floor for docs/benchmarks.md), and the engines
# under OUTDIR/engines. Inductor builds take minutes, so on a GPU it builds fp16 only
# (torchscript gives the PyTorch fp32 engine); on a CPU fp32 and bf16. A backend or precision this machine cannot run is skipped with its one-line
# reason. On a machine without a GPU it profiles the CPU backends instead. INT8 engines need
# nvidia-modelopt: the model is calibrated once on synthetic data (speed does not depend on the
# calibration data; accuracy is measured on real data by examples/digits/evaluate_int8.py).
# Each engine is built for one reported batch size (a fixed batch: TensorRT tunes its kernels
# for the opt batch, so an engine is timed at the batch it was built for), and profiled at it.
# Settings (environment): PYTHON (python3), MODEL (densenet121), BATCHES (1,32),
# ITERATIONS (20), BUILD_TIMEOUT (seconds per build, 240), DEVICE (cuda if visible, else cpu).
set -u
out=${1:?usage: scripts/gpu_benchmark.sh OUTDIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
model=${MODEL:-densenet121}
batches=${BATCHES:-1,32}
iterations=${ITERATIONS:-20}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
device=${DEVICE:-$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
mkdir -p "$out/engines"

"$py" - > "$out/environment.txt" <<'PY'
import importlib.util, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), "compute capability", torch.cuda.get_device_capability())
for m in ("torch_tensorrt", "onnxruntime", "onnxscript", "openvino", "matplotlib"):
    print(m, "present" if importlib.util.find_spec(m) else "absent")
PY
cat "$out/environment.txt"
"$py" "$repo/scripts/matmul_rate.py" --device "$device" --seconds 2 | tee "$out/matmul.json"

candidates=("tensorrt cuda fp32" "tensorrt cuda fp16" "tensorrt cuda bf16"
            "torchscript $device fp32" "torchscript $device fp16" "torchscript $device bf16")
if [ "$device" = cuda ]; then
    candidates+=("inductor cuda fp16")
else
    candidates+=("inductor cpu fp32" "inductor cpu bf16")
fi
candidates+=("onnxruntime cpu fp32" "openvino cpu fp32" "openvino cpu bf16")
candidates+=("tensorrt cuda int8" "onnxruntime cpu int8" "openvino cpu int8")
calibration=()
echo "== calibrate $model for int8 (synthetic data)"
if "$py" -m densenet_trt calibrate --model "$model" --synthetic --samples 64 --batch-size 16 \
    --output "$out/calibration" --name "$model-synthetic" --force --quiet; then
    calibration=(--calibration "$out/calibration/$model-synthetic")
else
    echo "   skipped: int8 engines (reason above)"
fi
built=()
for candidate in "${candidates[@]}"; do
    read -r backend dev precision <<< "$candidate"
    extra=()
    if [ "$precision" = int8 ]; then
        [ ${#calibration[@]} -eq 0 ] && continue
        extra=("${calibration[@]}")
    fi
    for batch in ${batches//,/ }; do
        name="$model-$backend-$dev-$precision-b$batch"
        echo "== build $backend $precision on $dev, batch $batch"
        if timeout "${BUILD_TIMEOUT:-240}" "$py" -m densenet_trt build --model "$model" --backend "$backend" \
            --device "$dev" --precision "$precision" --batch "$batch" --output "$out/engines" --name "$name" \
            "${extra[@]}" --force --quiet; then
            built+=("$out/engines/$name")
        else
            echo "   skipped: $backend $precision on $dev, batch $batch (reason above; 124 = over BUILD_TIMEOUT)"
            break
        fi
    done
done
if [ ${#built[@]} -eq 0 ]; then
    echo "no engine could be built here" >&2
    exit 1
fi
plot=()
if "$py" -c 'import matplotlib' 2>/dev/null; then plot=(--plot "$out/profile.png"); fi
"$py" -m densenet_trt profile "${built[@]}" --batch-size "$batches" --iterations "$iterations" \
    --json "$out/profile.json" --markdown "$out/profile.md" "${plot[@]}"
