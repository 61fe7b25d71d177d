"""Classify every image in a folder with a built engine and print the top 5 classes of each.

    python examples/python/classify_folder.py engines/densenet121-onnxruntime-fp32-b1-8-32-224 photos/

The plain API, step by step: load the engine (its manifest says how images become input),
preprocess the images with densenet_trt.read_image, run them in batches within the engine's batch
range, and turn the logits into probabilities. `densenet-trt predict` does the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import densenet_trt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", type=Path, help="engine folder written by `densenet-trt build`")
    parser.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--labels", type=Path,
                        help="class names, one per line [default: those the engine's manifest records]")
    args = parser.parse_args()

    engine = densenet_trt.load(args.engine)
    if engine.manifest.preprocessing is None:
        raise SystemExit(f"{args.engine} records no preprocessing; rebuild it with --preprocess or --mean/--std")
    preprocess = engine.manifest.preprocessing
    labels = args.labels.read_text(encoding="utf-8").splitlines() if args.labels else engine.manifest.labels
    files = densenet_trt.image_files(args.folder)
    if not files:
        raise SystemExit(f"no images in {args.folder}")

    batch = engine.batch.opt
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        x = np.stack([densenet_trt.read_image(f, preprocess) for f in chunk])  # float32 (N, C, H, W)
        if len(x) < engine.batch.min:  # pad the last batch up to the engine's smallest
            x = np.concatenate([x, np.zeros((engine.batch.min - len(x), *x.shape[1:]), np.float32)])
        logits = engine(x)[:len(chunk)]  # float32 torch.Tensor (N, classes) on the CPU
        top = torch.softmax(logits, dim=1).topk(min(5, logits.shape[1]), dim=1)
        for path, probabilities, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
            print(path)
            for p, i in zip(probabilities, indices):
                print(f"  {labels[i] if labels else i:<12} {p:7.2%}")


if __name__ == "__main__":
    main()
