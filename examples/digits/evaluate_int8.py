"""Float32 against INT8 top-1 of the digits DenseNet-BC on its held-out test split, for every
calibration method and every CPU backend installed, as a Markdown table.

    python examples/digits/evaluate_int8.py --work /tmp/digits-int8

Calibration uses the 300-image calibration split, evaluation the 400-image test split (see
digits.py). Each INT8 engine is built by `densenet_trt.build`, so it has passed the accuracy
gate; a backend whose engine fails the gate is reported as such.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import MEAN, STD, write_npz  # noqa: E402

from densenet_trt import DenseNetTRTError, Preprocessing, build, calibrate, create_model, load, load_data  # noqa: E402
from densenet_trt.backends import BACKENDS  # noqa: E402
from densenet_trt.int8.quantize import METHODS  # noqa: E402

MODEL = "densenet_bc40_k12"
CHECKPOINT = Path(__file__).resolve().parents[2] / "tests" / "data" / "digits_densenet_bc40_k12.pth"
PREPROCESS = Preprocessing(32, 32, (MEAN,), (STD,))
BATCH = "1:100:100"


def top1(run, images: np.ndarray, labels: np.ndarray, batch: int = 100) -> float:
    predicted = np.concatenate([run(images[i:i + batch]).argmax(1).numpy() for i in range(0, len(images), batch)])
    return float((predicted == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for data, calibrations and engines")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--exclude", action="append", default=[], help="layers kept in float (repeatable)")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    for split in ("calibration", "test"):
        write_npz(split, str(args.work / f"{split}.npz"))
    test = load_data(args.work / "test.npz")
    backends = [name for name in ("openvino", "onnxruntime") if BACKENDS[name].available().ok]
    net = create_model(MODEL, weights=CHECKPOINT)

    def eager(x):
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(x)))

    common = dict(weights=CHECKPOINT, batch=BATCH, output=args.work / "engines", force=True, preprocess=PREPROCESS)
    rows = [("float32", "-", f"{top1(eager, test.images, test.labels):.2%}")]
    for name in backends:
        engine = build(MODEL, backend=name, precision="fp32", name=f"{name}-fp32", **common)
        rows.append(("float32", name, f"{top1(load(engine.path), test.images, test.labels):.2%}"))
    suffix = "".join(f" --exclude {p}" for p in args.exclude)
    for method in args.methods.split(","):
        start = time.perf_counter()
        cal = calibrate(
            MODEL, weights=CHECKPOINT, data=args.work / "calibration.npz", eval_data=args.work / "test.npz",
            method=method, exclude=args.exclude, batch_size=50, samples=None,
            output=args.work / "calibration", name=method, force=True,
        )
        seconds = time.perf_counter() - start
        rows.append((f"int8 {method}{suffix}", f"ModelOpt fake-quant ({seconds:.0f} s to calibrate)",
                     f"{cal.report['evaluation']['int8_top1']:.2%}"))
        for name in backends:
            try:
                engine = build(MODEL, backend=name, precision="int8", calibration=cal.path,
                               name=f"{name}-int8-{method}", **common)
                result = f"{top1(load(engine.path), test.images, test.labels):.2%}"
            except DenseNetTRTError as e:
                result = f"failed the gate: {e}"
            rows.append((f"int8 {method}{suffix}", name, result))
    print("| precision | runner | test top-1 (400 images) |")
    print("| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
