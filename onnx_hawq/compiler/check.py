"""`compile --check`: the built library against onnxruntime on real inputs.

A graph whose arithmetic is all integer (plus QuantizeLinear/DequantizeLinear and data movement)
must agree bit for bit. A graph that keeps float arithmetic between integer ops (a transformer's
LayerNormalization, Softmax, Erf) cannot: TVM and onnxruntime round those differently in the last
ulp, which moves an occasional value across a quantization step. Such graphs are held to a per-sample
cosine similarity instead, and the report names the float ops responsible.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Library vs onnxruntime per graph output: differing elements, worst per-sample cosine, and
    which outputs come after float arithmetic (`approx`: judged by cosine, not bit for bit)."""

    mismatches: dict[str, int]
    sizes: dict[str, int]
    min_cosine: dict[str, float]
    max_abs: dict[str, float]
    float_ops: tuple[str, ...] = ()  # the rounding float ops the approximate outputs come after
    threshold: float = 0.99
    approx: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        exact = all(m == 0 for n, m in self.mismatches.items() if n not in self.approx)
        return exact and all(self.min_cosine[n] >= self.threshold for n in self.approx)

    def line(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        exact = [n for n in self.mismatches if n not in self.approx]
        parts = []
        if exact:
            bad, total = sum(self.mismatches[n] for n in exact), sum(self.sizes[n] for n in exact)
            parts.append(f"{bad} of {total} output values differ from onnxruntime (bit for bit)")
        if self.approx:
            parts.append(f"min per-sample cosine {min(self.min_cosine[n] for n in self.approx):.6f} (>= "
                         f"{self.threshold} required), max|diff| {max(self.max_abs[n] for n in self.approx):.3g} "
                         f"on {', '.join(self.approx)}: not bit for bit after float {', '.join(self.float_ops)}, "
                         "which TVM and onnxruntime round differently")
        return f"check {verdict}: " + "; ".join(parts)


def worst_cosine(got: np.ndarray, want: np.ndarray) -> float:
    """Smallest per-sample cosine; over the whole tensor when a sample holds one value (or none)."""
    from onnx_hawq.arith.similarity import sample_cosines

    g, w = got.astype(np.float64), want.astype(np.float64)
    if w.size == 0:
        return 1.0
    if w.ndim == 0 or w.size == len(w):
        g, w = g.reshape(1, -1), w.reshape(1, -1)
    return float(sample_cosines(w, g).min())


def compare(model: onnx.ModelProto, got: list[np.ndarray], want: list[np.ndarray], threshold: float) -> CheckResult:
    """Compare the library's outputs `got` with onnxruntime's `want` (graph output order)."""
    from onnx_hawq.report import float_rounding

    names = [o.name for o in model.graph.output]
    tainted, ops = float_rounding(model)
    mism, cos, diff = {}, {}, {}
    for n, g, w in zip(names, got, want):
        same = g.shape == w.shape
        mism[n] = int(np.sum(g != w)) if same else int(w.size)
        cos[n] = worst_cosine(g, w) if same else -1.0
        diff[n] = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()) if same and w.size else 0.0
    approx = tuple(n for n in names if n in tainted)
    return CheckResult(mism, {n: int(w.size) for n, w in zip(names, want)}, cos, diff, ops, threshold, approx)


def merge(a: CheckResult | None, b: CheckResult) -> CheckResult:
    """Two batches' results as one: mismatches and sizes add up, the worst cosine and |diff| stay."""
    if a is None:
        return b
    return dataclasses.replace(
        a, mismatches={n: a.mismatches[n] + b.mismatches[n] for n in a.mismatches},
        sizes={n: a.sizes[n] + b.sizes[n] for n in a.sizes},
        min_cosine={n: min(a.min_cosine[n], b.min_cosine[n]) for n in a.min_cosine},
        max_abs={n: max(a.max_abs[n], b.max_abs[n]) for n in a.max_abs})
