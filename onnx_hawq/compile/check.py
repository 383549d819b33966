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
    """Library vs onnxruntime per graph output: differing elements, and the worst per-sample cosine."""

    mismatches: dict[str, int]
    sizes: dict[str, int]
    min_cosine: dict[str, float]
    max_abs: dict[str, float]
    float_ops: tuple[str, ...] = ()  # rounding float ops in the graph: only approximate agreement possible
    threshold: float = 0.99

    @property
    def passed(self) -> bool:
        if not self.float_ops:
            return not any(self.mismatches.values())
        return all(c >= self.threshold for c in self.min_cosine.values())

    def line(self) -> str:
        bad, total = sum(self.mismatches.values()), sum(self.sizes.values())
        verdict = "PASSED" if self.passed else "FAILED"
        if not self.float_ops:
            return f"check {verdict}: {bad} of {total} output values differ from onnxruntime (bit for bit)"
        return (f"check {verdict}: min per-sample cosine {min(self.min_cosine.values()):.6f} "
                f"(>= {self.threshold} required), max|diff| {max(self.max_abs.values()):.3g}, {bad} of {total} "
                f"values differ; not bit for bit: {', '.join(self.float_ops)} run in float between integer "
                "ops and round differently in TVM and onnxruntime")


def compare(model: onnx.ModelProto, got: list[np.ndarray], want: list[np.ndarray], threshold: float) -> CheckResult:
    """Compare the library's outputs `got` with onnxruntime's `want` (graph output order)."""
    from onnx_hawq.report import float_rounding
    from onnx_hawq.validate.metrics import sample_cosines

    names = [o.name for o in model.graph.output]
    mism, cos, diff = {}, {}, {}
    for n, g, w in zip(names, got, want):
        same = g.shape == w.shape
        mism[n] = int(np.sum(g != w)) if same else int(w.size)
        cos[n] = float(sample_cosines(w.astype(np.float64), g.astype(np.float64)).min()) if same else -1.0
        diff[n] = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max()) if same and w.size else 0.0
    return CheckResult(mism, {n: int(w.size) for n, w in zip(names, want)}, cos, diff,
                       float_rounding(model)[1], threshold)
