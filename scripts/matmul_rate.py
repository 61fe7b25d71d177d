"""The machine's measured matrix-multiply rate: the floor each benchmark row is compared with.

    python scripts/matmul_rate.py [--device cpu|cuda] [--size N] [--seconds 3]

Times square torch.mm of SIZE x SIZE in float32 and bfloat16 (and float16 on a GPU) for about
SECONDS each and prints GFLOP/s (2 * SIZE^3 FLOP per product, median over repeats) as JSON.
On the CPU each product is timed with perf_counter (SIZE 2048 by default). On a GPU a launch
and a synchronisation cost about as much as a 2048^3 product on an H100, so a loop of products
runs between two CUDA events, with nothing synchronised inside it, at SIZE 8192 by default.
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
    times = cuda_times(a, b, seconds) if device == "cuda" else cpu_times(a, b, seconds)
    return 2 * size**3 / statistics.median(times) / 1e9


def cpu_times(a: torch.Tensor, b: torch.Tensor, seconds: float) -> list[float]:
    """Seconds of each product, for about ``seconds``."""
    torch.mm(a, b)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return times


def cuda_times(a: torch.Tensor, b: torch.Tensor, seconds: float, loop: int = 20) -> list[float]:
    """Seconds per product, each the mean of a loop of ``loop`` products between two CUDA
    events (no synchronisation inside the loop), for about ``seconds``."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        torch.mm(a, b)
    torch.cuda.synchronize()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start.record()
        for _ in range(loop):
            torch.mm(a, b)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1000 / loop)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=None, help="default: 2048 on the CPU, 8192 on a GPU")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    args.size = args.size or (8192 if args.device == "cuda" else 2048)
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
