"""Compiled or captured output against eager PyTorch.

Outputs are judged by absolute and relative error together, the way Polygraphy's comparator
does: ``max_abs <= atol + rtol * max|reference|``, plus the cosine similarity of the logits and
the agreement of their top-1 classes.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float
    min_top1: float  # fraction of samples whose top-1 class must agree


# Float32 graphs differ from eager only by the order of floating-point operations.
TOLERANCES = {"fp32": Tolerance(atol=1e-4, rtol=1e-4, min_cosine=0.99999, min_top1=1.0)}


@dataclasses.dataclass(frozen=True)
class Comparison:
    max_abs: float
    max_rel: float  # max_abs / max|reference|
    scale: float  # max|reference|
    cosine: float  # the smallest per-sample cosine similarity
    top1_agreement: float
    samples: int

    def passes(self, tol: Tolerance) -> bool:
        return (
            self.max_abs <= tol.atol + tol.rtol * self.scale
            and self.cosine >= tol.min_cosine
            and self.top1_agreement >= tol.min_top1
        )

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (
            f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, cosine {self.cosine:.6f}, "
            f"top-1 agreement {self.top1_agreement:.1%} over {self.samples} samples"
        )


def compare(reference: torch.Tensor, output: torch.Tensor) -> Comparison:
    """``output`` against ``reference``, both (N, classes), in float64."""
    ref = reference.detach().to("cpu", torch.float64)
    out = output.detach().to("cpu", torch.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {tuple(out.shape)} differs from eager {tuple(ref.shape)}")
    diff = (out - ref).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    cosine = torch.nn.functional.cosine_similarity(out, ref, dim=1, eps=1e-12)
    agree = (out.argmax(1) == ref.argmax(1)).double().mean()
    return Comparison(
        max_abs=max_abs,
        max_rel=max_abs / scale if scale else max_abs,
        scale=scale,
        cosine=float(cosine.min()),
        top1_agreement=float(agree),
        samples=int(ref.shape[0]),
    )
