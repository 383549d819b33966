"""Similarity of a test tensor to its reference: SQNR and per-sample cosine (shared by validate
and compile --check)."""

from __future__ import annotations

import math

import numpy as np


def sqnr_db(signal2: float, noise2: float) -> float:
    """10·log10(signal² / noise²); inf without noise, -inf for a zero signal with noise."""
    if noise2 == 0.0:
        return math.inf
    if signal2 == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal2 / noise2)


def sample_cosines(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (axis 0); 1 when both are zero, 0 when only one is."""
    a = ref.reshape(len(ref), -1) if ref.ndim else ref.reshape(1, 1)
    b = test.reshape(len(test), -1) if test.ndim else test.reshape(1, 1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    return np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, np.clip(cos, -1, 1)))
