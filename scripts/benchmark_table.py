"""The docs/benchmarks.md table from a profile report and a matmul rate.

    python scripts/benchmark_table.py OUTDIR    # reads OUTDIR/profile.json and OUTDIR/matmul.json

One row per engine and batch size (profile report version 2): median latency (latency mode),
images/s measured in throughput mode (the most requests in flight; nan if it was not run), the
engine's speedup over eager fp32 (median of paired ratios) and over eager in its own precision
where that ran, and the floor: the model's FLOP per image (counted from the model) at the
machine's measured matrix-multiply rate in the engine's precision, and how far the engine is
from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from densenet_trt.model.registry import preset_stats


def main(folder: str) -> None:
    report = json.loads((Path(folder) / "profile.json").read_text())
    gflops = json.loads((Path(folder) / "matmul.json").read_text())["gflops"]
    print("| backend | precision | batch | median ms | images/s (measured) | speedup vs eager fp32 "
          "| vs eager same precision | floor ms | engine / floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = report["rows"]
    for row in rows:
        if row["runner"] != "engine" or row["mode"] != "latency":
            continue
        engine = report["engines"][row["engine"]]
        measured = [r["images_per_s"] for r in rows if r["mode"] == "throughput"
                    and r["engine"] == row["engine"] and r["batch"] == row["batch"]]
        images_per_s = max(measured) if measured else float("nan")
        speedup = row["speedup"]
        flop = 2 * preset_stats(engine["model"])["macs"] * row["batch"]
        rate = gflops.get(engine["precision"], gflops["fp32"])
        floor_ms = flop / (rate * 1e9) * 1e3
        median = row["latency_ms"]["median"]
        same = speedup.get(engine["precision"]) if engine["precision"] != "fp32" else None
        print(f"| {engine['backend']} | {engine['precision']} | {row['batch']} | {median:.1f} | "
              f"{images_per_s:.1f} | {speedup.get('fp32', float('nan')):.2f}x | "
              f"{'' if same is None else f'{same:.2f}x'} | {floor_ms:.1f} | {median / floor_ms:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
