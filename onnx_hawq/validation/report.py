"""The gate: checks with PASSED/FAILED lines, the text report, the JSON report, and exit code 1."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from onnx_hawq.errors import HawqError, InputError
from onnx_hawq.validation.comparator import Comparison, LayerResult
from onnx_hawq.validation.config import Thresholds

BACKEND_MIN_COSINE = 0.99  # backends vs onnxruntime where float ops make bit-exactness impossible

KIND, VERSION = "onnx-hawq-validation", 1


class GateFailed(HawqError):
    """One or more checks failed (exit code 1); the report has been printed and written."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class Check:
    """One threshold compared with one measured value."""

    name: str
    value: float
    op: str  # ">=" or "<="
    threshold: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    def line(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return f"{verdict}  {self.name}: {_num(self.value)}{self.unit} {self.op} {_num(self.threshold)}{self.unit}"


def _num(v: float) -> str:
    return f"{v:.6g}" if math.isfinite(v) else str(v)


def output_checks(comp: Comparison, th: Thresholds) -> list[Check]:
    """SQNR, cosine and top-1 agreement of every output (top-1 only for classification outputs)."""
    if th.min_top1_agreement is not None and all(o.top1_agreement is None for o in comp.outputs.values()):
        raise InputError("--min-top1-agreement needs an output with class scores (a 2-D [N, C] output, or "
                         f"--classes-axis K); {', '.join(comp.outputs)} has none")
    checks = []
    for name, out in comp.outputs.items():
        if th.min_sqnr is not None:
            checks.append(Check(f"SQNR {name}", out.metrics.sqnr_db, ">=", th.min_sqnr, " dB"))
        if th.min_cosine is not None:
            checks.append(Check(f"cosine {name}", out.metrics.cosine, ">=", th.min_cosine))
        if th.min_top1_agreement is not None and out.top1_agreement is not None:
            checks.append(Check(f"top-1 agreement {name}", out.top1_agreement, ">=", th.min_top1_agreement, "%"))
    return checks


def evaluate(comp: Comparison, th: Thresholds) -> tuple[Check, ...]:
    """Every check the thresholds ask for that the comparison can answer, plus bit exactness."""
    checks = output_checks(comp, th)
    if th.max_accuracy_drop is not None and comp.accuracy is not None:
        checks.append(Check("accuracy drop", comp.accuracy.drop, "<=", th.max_accuracy_drop, " pt"))
    for backend, tensors in comp.backends.items():
        wrong = sum(m.mismatches for m in tensors.values())
        if tensors or backend not in comp.backend_cosine:
            checks.append(Check(f"{backend} == ort bit for bit (mismatching elements)", wrong, "<=", 0))
    for backend, cosines in comp.backend_cosine.items():
        checks.append(Check(f"{backend} vs ort outputs after float ops, min per-sample cosine", min(cosines.values()),
                            ">=", BACKEND_MIN_COSINE))
    return tuple(checks)


@dataclasses.dataclass(frozen=True)
class Report:
    """A comparison, its checks, and what was compared."""

    comparison: Comparison
    checks: tuple[Check, ...]
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        """The JSON report; non-finite numbers are written as the strings 'inf', '-inf', 'nan'."""
        comp = dataclasses.asdict(self.comparison)
        comp["accuracy"] = None if self.comparison.accuracy is None else {
            **comp["accuracy"], "drop": self.comparison.accuracy.drop}
        checks = [{**dataclasses.asdict(c), "passed": c.passed} for c in self.checks]
        return _jsonable({"kind": KIND, "version": VERSION, **self.inputs, **comp, "checks": checks,
                          "passed": self.passed})

    def text(self, top: int | None = None) -> str:
        """The human report: outputs, accuracy, layers, backends, checks, verdict."""
        parts = [format_outputs(self.comparison)]
        if self.comparison.layers:
            parts.append(format_layers(self.comparison.layers, top))
        if self.comparison.skipped_layers:
            parts.append(format_skipped(self.comparison))
        if self.comparison.backends:
            parts.append(format_backends(self.comparison))
        parts.append("\n".join(c.line() for c in self.checks) or "no checks (every threshold is off)")
        parts.append(verdict(self))
        return "\n\n".join(parts)


def verdict(report: Report) -> str:
    n = len(report.checks)
    if report.passed:
        return f"validation PASSED ({n} check{'s' * (n != 1)})"
    return f"validation FAILED ({len(report.failed)} of {n} checks: {', '.join(c.name for c in report.failed)})"


def raise_if_failed(report: Report) -> None:
    """GateFailed (exit code 1) when a check failed."""
    if not report.passed:
        raise GateFailed(verdict(report))


def _db(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2f}" if math.isfinite(v) else ("inf" if v > 0 else "-inf"))


def format_outputs(comp: Comparison) -> str:
    lines = [f"{comp.samples} samples"]
    for name, out in comp.outputs.items():
        m = out.metrics
        top1 = "" if out.top1_agreement is None else f"  top-1 agreement {out.top1_agreement:.2f}%"
        lines.append(f"output {name}: SQNR {_db(m.sqnr_db)} dB  cosine {m.cosine:.6f} (min per sample "
                     f"{m.min_cosine:.6f})  max|err| {m.max_abs_error:.4g}  mean|err| {m.mean_abs_error:.4g}{top1}")
    if comp.accuracy is not None:
        a = comp.accuracy
        lines.append(f"accuracy ({a.output}): float {a.float:.2f}%  quantized {a.quantized:.2f}%  "
                     f"(drop {a.drop:+.2f} pt)")
    return "\n".join(lines)


def format_layers(layers: tuple[LayerResult, ...], top: int | None = None) -> str:
    """The layer-wise table, worst first (local SQNR: the node alone on exact inputs)."""
    shown = layers if top is None else layers[:top]
    width = max(12, *(len(r.label) for r in shown))
    head = (f"{'rank':>4}  {'layer':<{width}}  {'op':<24}  {'bits':<5}  {'local SQNR':>10}  "
            f"{'SQNR':>8}  {'cosine':>8}  {'max|err|':>9}")
    lines = ["layer-wise (worst first; SQNR in dB, local = the node alone on exact inputs)", head]
    for k, r in enumerate(shown, 1):
        lines.append(f"{k:>4}  {r.label:<{width}}  {r.op[:24]:<24}  {r.bits:<5}  {_db(r.local_sqnr_db):>10}  "
                     f"{_db(r.metrics.sqnr_db):>8}  {r.metrics.cosine:>8.5f}  {r.metrics.max_abs_error:>9.4g}")
    if len(shown) < len(layers):
        lines.append(f"... {len(layers) - len(shown)} more in the JSON report")
    return "\n".join(lines)


def format_skipped(comp: Comparison) -> str:
    """The integer nodes the layer-wise report left out, with the reason for each."""
    lines = [f"layer-wise: {len(comp.skipped_layers)} integer node(s) not mapped back to the float graph"]
    lines += [f"  {s.node} ({s.op}, {s.tensor}): {s.reason}" for s in comp.skipped_layers]
    return "\n".join(lines)


def format_backends(comp: Comparison) -> str:
    lines = []
    for backend, tensors in comp.backends.items():
        wrong = {t: m for t, m in tensors.items() if m.mismatches}
        total = sum(m.elements for m in tensors.values())
        lines.append(f"backend {backend} vs ort: {len(tensors)} tensors, {total} elements, "
                     f"{sum(m.mismatches for m in wrong.values())} mismatching")
        if comp.not_compared:
            lines.append(f"  not compared: {comp.not_compared} tensors computed from float "
                         f"{', '.join(comp.float_rounding)} (backends round float ops differently)")
        for t, m in wrong.items():
            lines.append(f"  {t}: {m.mismatches} of {m.elements} differ (max |diff| {m.max_abs_diff:.4g})")
    return "\n".join(lines)


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v
