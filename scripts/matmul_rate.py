"""The machine's measured matrix-multiply rate: the floor each benchmark row is compared with.

    python scripts/matmul_rate.py [--device cpu|cuda] [--size 2048] [--seconds 3]

Times square torch.mm of SIZE x SIZE in float32 and bfloat16 (and float16 on a GPU) for about
SECONDS each and prints GFLOP/s (2 * SIZE^3 FLOP per product, median over repeats) as JSON.
densenet121 needs 5.67 GFLOP per 224x224 image, so at R GFLOP/s no engine can beat
5.67 / R * 1000 ms per image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def rate(device: str, dtype: torch.dtype, size: int, seconds: float) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if args.device == "cuda":
        dtypes["fp16"] = torch.float16
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "size": args.size, "torch": torch.__version__,
        "gflops": {name: round(rate(args.device, dtype, args.size, args.seconds), 1) for name, dtype in dtypes.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
