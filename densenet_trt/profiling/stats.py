"""Statistics of timings: the summary of one runner's samples and the paired speedup."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

UNSTABLE_CV = 0.05
# Below this many samples a spread (CV) or a p99 is not a statistic: reports print TOO_FEW in
# their place and say so under the table.
MIN_SAMPLES = 10
TOO_FEW = f"n<{MIN_SAMPLES}"
# Below this many samples p99 (linear interpolation) lies between the two largest: it is the max.
TAIL_SAMPLES = 100


@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of a set of timings in milliseconds."""

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float

    @property
    def enough(self) -> bool:
        """Enough samples (``MIN_SAMPLES``) for the CV and p99 to mean anything."""
        return self.count >= MIN_SAMPLES

    @property
    def unstable(self) -> bool | None:
        """Spread too wide to trust the numbers: rerun on a quieter machine or for longer; None
        where there are too few samples to tell."""
        return self.cv > UNSTABLE_CV if self.enough else None

    @property
    def tail_trusted(self) -> bool:
        """Enough samples for p99 to be a tail, not (nearly) the largest sample."""
        return self.count >= TAIL_SAMPLES


def summarize(samples_ms: Sequence[float]) -> Stats:
    """Statistics of ``samples_ms`` (population std; linear-interpolated percentiles)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarize")
    mean = float(a.mean())
    std = float(a.std())
    p90, p95, p99 = (float(v) for v in np.percentile(a, [90, 95, 99]))
    return Stats(
        count=int(a.size), min=float(a.min()), mean=mean, median=float(np.median(a)),
        p90=p90, p95=p95, p99=p99, max=float(a.max()), std=std, cv=std / mean if mean > 0 else 0.0,
    )


def paired_speedup(baseline_ms: Sequence[float], engine_ms: Sequence[float]) -> float:
    """The median of the paired ratios baseline/engine (pairs measured back to back)."""
    if len(baseline_ms) != len(engine_ms) or not engine_ms:
        raise ValueError(f"need equally many paired samples, got {len(baseline_ms)} and {len(engine_ms)}")
    engine = np.asarray(engine_ms, dtype=np.float64)
    if (engine <= 0).any():
        raise ValueError("engine times must be positive")
    return float(np.median(np.asarray(baseline_ms, dtype=np.float64) / engine))
