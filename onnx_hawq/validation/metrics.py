"""Error metrics between a reference tensor and a test tensor, accumulated batch by batch.

SQNR = 10·log10(Σ ref² / Σ (test − ref)²) over every element seen (inf when identical);
cosine = mean over samples of the cosine similarity of the flattened sample tensors;
top-1 = argmax over axis 1 (classes on axis 1, as in the sensitivity loss).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from onnx_hawq.arith.similarity import sample_cosines, sqnr_db
from onnx_hawq.errors import InputError

__all__ = ["sample_cosines", "sqnr_db"]


def is_classifier(shape: tuple) -> bool:
    """An output with two or more classes on axis 1 (logits or probabilities)."""
    return len(shape) >= 2 and shape[1] > 1


@dataclasses.dataclass(frozen=True)
class TensorMetrics:
    """How far a test tensor is from its reference, over all samples."""

    sqnr_db: float
    cosine: float
    max_abs_error: float
    mean_abs_error: float
    elements: int


@dataclasses.dataclass
class TensorStats:
    """Running sums behind TensorMetrics."""

    signal2: float = 0.0
    noise2: float = 0.0
    cosine_sum: float = 0.0
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
        self.samples += len(cos)
        self.abs_sum += float(err.sum())
        self.abs_max = max(self.abs_max, float(err.max(initial=0.0)))
        self.elements += err.size

    def metrics(self) -> TensorMetrics:
        return TensorMetrics(sqnr_db(self.signal2, self.noise2), self.cosine_sum / max(self.samples, 1),
                             self.abs_max, self.abs_sum / max(self.elements, 1), self.elements)


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
