"""Compiled or captured output against eager PyTorch.

Outputs are judged as a whole, not element by element: the largest absolute error must be
within ``atol + rtol * max|reference|`` (the relative part scales with the largest logit, as
numpy's ``allclose`` scales with each element), and the cosine similarity of each sample's
logits and the agreement of their top-1 classes must hold. The tolerances per precision are in
``spec.Precision``. Top-1 is required to agree only on decisive
samples, those whose eager top-1 leads its runner-up by more than twice the allowed error: a
near-tie may flip within the tolerance without anything being wrong. Where no sample is
decisive (random weights give near-flat logits), top-1 is not checked, and says so.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..errors import DenseNetTRTError

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float
    min_top1: float  # fraction of decisive samples whose top-1 class must agree

    def allowed(self, scale: float) -> float:
        return self.atol + self.rtol * scale

    def loosened(self, limit: Tolerance) -> list[str]:
        """The bounds in which this tolerance lets through more than ``limit`` does."""
        wider = [name for name in ("atol", "rtol") if getattr(self, name) > getattr(limit, name)]
        return wider + [name for name in ("min_cosine", "min_top1") if getattr(self, name) < getattr(limit, name)]

    def __str__(self) -> str:
        return (f"atol {self.atol:g}, rtol {self.rtol:g}, min_cosine {self.min_cosine:g}, "
                f"min_top1 {self.min_top1:g}")


@dataclasses.dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float  # max_abs / max|reference|
    scale: float  # max|reference|
    cosine: float  # the smallest per-sample cosine similarity
    top1_agreement: float  # over all samples
    decisive_top1: float | None  # over the samples whose eager margin exceeds twice the allowed
    decisive: int  # error; None where none does: top-1 was not checked
    samples: int
    tolerance: Tolerance
    distinct_inputs: int | None = None  # fewer than samples: the inputs were repeated to fill the batch

    def passes(self) -> bool:
        tol = self.tolerance
        return (
            self.max_abs <= tol.allowed(self.scale)
            and self.cosine >= tol.min_cosine
            and (self.decisive_top1 is None or self.decisive_top1 >= tol.min_top1)
        )

    def as_dict(self) -> dict:
        """The measurements and the verdict (the tolerance is recorded once, by the caller)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tolerance"}
        out["passed"] = self.passes()
        return out

    def __str__(self) -> str:
        repeated = ("" if self.distinct_inputs is None or self.distinct_inputs >= self.samples
                    else f" ({self.distinct_inputs} distinct inputs, repeated)")
        return (
            f"max abs {self.max_abs:.3g} (allowed {self.tolerance.allowed(self.scale):.3g}), "
            f"max rel {self.max_rel:.3g}, cosine {self.cosine:.6f}, "
            f"{top1_text(self.decisive_top1, self.decisive, self.samples)} over {self.samples} samples{repeated}"
        )


def top1_text(decisive_top1: float | None, decisive: int, samples: int) -> str:
    """What the top-1 check found: agreement on the decisive samples, or that there was none to check."""
    if decisive_top1 is None or decisive == 0:
        return f"top-1 not checked (0 of {samples} samples decisive)"
    return f"top-1 agreement {decisive_top1:.1%} on {decisive} of {samples} samples decisive"


def compare(reference: torch.Tensor, output: torch.Tensor, tolerance: Tolerance,
            distinct_inputs: int | None = None) -> Comparison:
    """``output`` against ``reference``, both (N, classes), in float64; ``distinct_inputs``:
    how many of the N inputs were distinct, where they were repeated."""
    import torch

    ref = reference.detach().to("cpu", torch.float64)
    out = output.detach().to("cpu", torch.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {tuple(out.shape)} differs from eager {tuple(ref.shape)}")
    max_abs = float((out - ref).abs().max()) if ref.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    cosine = torch.nn.functional.cosine_similarity(out, ref, dim=1, eps=1e-12)
    agree = out.argmax(1) == ref.argmax(1)
    if ref.shape[1] > 1:
        top2 = ref.topk(2, dim=1).values
        decisive = (top2[:, 0] - top2[:, 1]) > 2 * tolerance.allowed(scale)
    else:
        decisive = torch.ones_like(agree)
    n_decisive = int(decisive.sum())
    return Comparison(
        max_abs=max_abs,
        max_rel=max_abs / scale if scale else max_abs,
        scale=scale,
        cosine=float(cosine.min()),
        top1_agreement=float(agree.double().mean()),
        decisive_top1=float(agree[decisive].double().mean()) if n_decisive else None,
        decisive=n_decisive,
        samples=int(ref.shape[0]),
        tolerance=tolerance,
        distinct_inputs=distinct_inputs,
    )


def check_finite(outputs: dict[str, torch.Tensor], n: int, inputs: str) -> None:
    """Refuse NaN or Inf among ``outputs`` (by who gave them) at batch ``n``: compared, they
    would only read as a difference and be blamed on the engine's arithmetic."""
    import torch

    bad = [who for who, out in outputs.items() if not bool(torch.isfinite(out).all())]
    if bad:
        raise DenseNetTRTError(
            f"{' and '.join(bad)} gave non-finite outputs (NaN or Inf) at batch {n} on the {inputs}: "
            "non-finite inputs or weights, or values beyond float32's range, are the likely cause, "
            "not the engine's arithmetic; check the weights and the data"
        )


def by_batch_size(results: list[tuple[int, Comparison]], against: str = "") -> list[str]:
    """A line per batch size of ``results`` (batch size, comparison), however many batches of
    that size were compared: how many, how many within the tolerance, and the worst (the
    largest error relative to its allowance)."""
    lines = []
    for n in sorted({n for n, _ in results}):
        of_size = [c for size, c in results if size == n]
        worst = max(of_size, key=lambda c: c.max_abs / max(c.tolerance.allowed(c.scale), 1e-300))
        within = sum(c.passes() for c in of_size)
        several = len(of_size) > 1
        runs = f"{len(of_size)} batches" if several else "1 batch"
        verdict = "within the tolerance" if within == len(of_size) else f"{len(of_size) - within} outside the tolerance"
        lines.append(f"  batch {n}, {runs}: {verdict}; {'the worst' if several else 'it'}{against}: {worst}")
    return lines
