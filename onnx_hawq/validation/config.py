"""Configuration of a validation run: what to compare (CompareOptions) and the gate (Thresholds)."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError

DEFAULT_MIN_SQNR = 20.0  # dB, on every output
DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points, when labels are given


@dataclasses.dataclass(frozen=True)
class Thresholds(JsonConfig):
    """The gate. None switches a check off. Percentages are 0..100 (agreement) and points (drop)."""

    min_sqnr: Optional[float] = DEFAULT_MIN_SQNR  # dB, per output
    min_cosine: Optional[float] = None  # mean per-sample cosine similarity, per output
    min_top1_agreement: Optional[float] = None  # %, per classification output
    max_accuracy_drop: Optional[float] = DEFAULT_MAX_ACCURACY_DROP  # points (float - quantized)

    def __post_init__(self):
        for name in ("min_sqnr", "min_cosine", "min_top1_agreement", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None and math.isnan(value):
                raise InputError(f"--{name.replace('_', '-')} must be a number, not NaN")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise InputError("--min-cosine must lie in [-1, 1]")
        if self.min_top1_agreement is not None and not 0.0 <= self.min_top1_agreement <= 100.0:
            raise InputError("--min-top1-agreement is a percentage in [0, 100]")


@dataclasses.dataclass(frozen=True)
class CompareOptions(JsonConfig):
    """How the Comparator runs: batch size, the layer-wise report, extra backends checked against ORT,
    and the classes axis of the outputs (None: only 2-D [N, C] outputs are classifiers)."""

    batch_size: int = 64
    layerwise: bool = False
    backends: tuple[str, ...] = ("ort",)
    classes_axis: Optional[int] = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise InputError("--batch-size must be >= 1")
        if self.classes_axis is not None and self.classes_axis == 0:
            raise InputError("--classes-axis 0 is the sample axis; give the axis of the class scores (e.g. -1)")

    @property
    def extra_backends(self) -> tuple[str, ...]:
        """The backends besides onnxruntime, which is always run (it is the gate's reference)."""
        return tuple(b for b in self.backends if b != "ort")


def parse_threshold(text: str | None, option: str) -> float | None:
    """'25' -> 25.0; 'none'/'off' -> None (check disabled). Percent signs are allowed and dropped."""
    if text is None:
        return None
    cleaned = text.strip().lower().rstrip("%").strip()
    if cleaned in ("none", "off"):
        return None
    try:
        return float(cleaned)
    except ValueError:
        raise InputError(f"{option} {text!r} is not a number (or 'none' to switch the check off)") from None


def parse_backends(text: str) -> tuple[str, ...]:
    """'ort,reference' -> ('ort', 'reference'); unknown names are InputErrors."""
    from onnx_hawq.validation.backends import BACKENDS

    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in BACKENDS]
    if not names or unknown:
        raise InputError(f"--backends {text!r}: unknown backend(s) {', '.join(unknown) or '(none given)'}; "
                         f"available: {', '.join(BACKENDS)}")
    return names
