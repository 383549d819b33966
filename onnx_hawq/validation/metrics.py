"""Error metrics between a reference tensor and a test tensor, accumulated batch by batch.

SQNR = 10·log10(Σ ref² / Σ (test − ref)²) over every element seen (inf when identical);
cosine = mean (and min) over samples of the cosine similarity of the flattened sample tensors;
top-1 = argmax over the classes axis: axis 1 of a 2-D [N, C] output, or a declared axis
(`--classes-axis`); other outputs (an OCR recognizer's [N, T, C], a detector's anchors) have no top-1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from onnx_hawq.arith.similarity import sample_cosines, sqnr_db
from onnx_hawq.errors import InputError

__all__ = ["sample_cosines", "sqnr_db"]


def classes_axis(shape: tuple, axis: int | None = None) -> int | None:
    """The axis holding class scores: `axis` when declared (and the output has it, with two or more
    entries), else 1 for a 2-D [N, C] output with C >= 2; None when the output is no classifier."""
    if axis is None:
        return 1 if len(shape) == 2 and shape[1] > 1 else None
    k = axis + len(shape) if axis < 0 else axis
    return k if 0 < k < len(shape) and shape[k] > 1 else None


def is_classifier(shape: tuple, axis: int | None = None) -> bool:
    """An output with two or more class scores on its classes axis (see `classes_axis`)."""
    return classes_axis(shape, axis) is not None


@dataclasses.dataclass(frozen=True)
class TensorMetrics:
    """How far a test tensor is from its reference, over all samples."""

    sqnr_db: float
    cosine: float  # mean per-sample cosine
    max_abs_error: float
    mean_abs_error: float
    elements: int
    min_cosine: float = 1.0  # worst per-sample cosine


@dataclasses.dataclass
class TensorStats:
    """Running sums behind TensorMetrics."""

    signal2: float = 0.0
    noise2: float = 0.0
    cosine_sum: float = 0.0
    cosine_min: float = 1.0
    samples: int = 0
    abs_sum: float = 0.0
    abs_max: float = 0.0
    elements: int = 0

    def add(self, ref: np.ndarray, test: np.ndarray, what: str = "tensor") -> None:
        if ref.shape != test.shape:
            raise InputError(f"{what}: the models disagree on its shape ({ref.shape} vs {test.shape})")
        ref, test = ref.astype(np.float64), test.astype(np.float64)
        err = np.abs(test - ref)
        self.signal2 += float(np.sum(ref * ref))
        self.noise2 += float(np.sum(err * err))
        cos = sample_cosines(ref, test)
        self.cosine_sum += float(cos.sum())
        self.cosine_min = min(self.cosine_min, float(cos.min(initial=1.0)))
        self.samples += len(cos)
        self.abs_sum += float(err.sum())
        self.abs_max = max(self.abs_max, float(err.max(initial=0.0)))
        self.elements += err.size

    def metrics(self) -> TensorMetrics:
        return TensorMetrics(sqnr_db(self.signal2, self.noise2), self.cosine_sum / max(self.samples, 1),
                             self.abs_max, self.abs_sum / max(self.elements, 1), self.elements, self.cosine_min)


@dataclasses.dataclass
class Counter:
    """hits / total, as a percentage."""

    hits: int = 0
    total: int = 0

    def add(self, hits: np.ndarray) -> None:
        self.hits += int(np.count_nonzero(hits))
        self.total += int(hits.size)

    def percent(self) -> float | None:
        return 100.0 * self.hits / self.total if self.total else None


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Elements of one tensor where a backend differs from onnxruntime."""

    elements: int
    mismatches: int
    max_abs_diff: float


@dataclasses.dataclass
class MismatchStats:
    elements: int = 0
    mismatches: int = 0
    max_abs_diff: float = 0.0

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        if ref.shape != test.shape:
            self.elements += ref.size
            self.mismatches += ref.size
            self.max_abs_diff = math.inf
            return
        diff = np.abs(ref.astype(np.float64) - test.astype(np.float64))
        differs = ref != test
        if ref.dtype.kind == "f" or test.dtype.kind == "f":
            differs &= ~(np.isnan(ref.astype(np.float64)) & np.isnan(test.astype(np.float64)))
        self.elements += ref.size
        self.mismatches += int(np.count_nonzero(differs))
        self.max_abs_diff = max(self.max_abs_diff, float(np.nanmax(diff, initial=0.0)))

    def result(self) -> Mismatch:
        return Mismatch(self.elements, self.mismatches, self.max_abs_diff)
