"""Per-layer cost models of one bit choice: size in bytes, bit operations, and Ω.

Size counts what the integer rewrite stores for a layer: its weights packed at `w_bits`
(ceil(params · w_bits / 8) bytes), a float32 scale per output channel, and an int32 bias per
output channel when the layer has a bias. BOPs = MACs · w_bits · a_bits (HAWQ-V3).
Ω_i(b) = s_i · ||Q_b(W_i) − W_i||², with s_i the layer's average Hessian trace (or its top
eigenvalue, HAWQ-V1) and Q_b exactly the rewrite's quantizer (`onnx_hawq.arith.quantizer`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx

from onnx_hawq.errors import InputError
from onnx_hawq.layers import Layer, weights_of
from onnx_hawq.plans import LayerBits
from onnx_hawq.arith.quantizer import layer_size_bytes, weight_error, weight_qmax

log = logging.getLogger("onnx_hawq")

METRICS = ("trace", "eigen")


def candidate_choices(bits, act_bits) -> tuple[LayerBits, ...]:
    """Every (weight bits, activation bits) pair, sorted; invalid widths are InputErrors."""
    return tuple(LayerBits(w, a) for w in sorted(set(bits)) for a in sorted(set(act_bits)))


def size_bytes(layer: Layer, w_bits: int) -> int:
    """Bytes the rewrite stores for `layer` at `w_bits`: packed weights, scales and bias."""
    return layer_size_bytes(layer.params, layer.out_channels, w_bits, layer.op_type in ("Conv", "Gemm"))


def bops(layer: Layer, w_bits: int, a_bits: int) -> int:
    """Bit operations per sample: MACs · w_bits · a_bits."""
    return layer.macs * w_bits * a_bits


def sensitivity_of(sens, layer: Layer, metric: str) -> float:
    """The layer's Hessian factor for Ω: average trace or top eigenvalue, clamped at 0."""
    entry = sens.layers[layer.name]
    value = entry.trace if metric == "trace" else entry.eigenvalue
    if value is None:
        raise InputError(f"sensitivity file has no eigenvalue for layer {layer.name}; "
                         "re-run `onnx-hawq sensitivity` with eigenvalues, or use --metric trace")
    if not math.isfinite(value):
        raise InputError(f"sensitivity file holds a non-finite {metric} for layer {layer.name}")
    if value < 0:
        log.warning("layer %s has a negative %s (%.3g); treating it as 0 (insensitive)",
                    layer.name, metric, value)
    return max(float(value), 0.0)


def weight_errors(w: np.ndarray, choices) -> tuple[float, ...]:
    """||Q_b(W) − W||² per choice; choices with the same effective |w_q| cap share one value."""
    cache: dict[int, float] = {}
    out = []
    for ch in choices:
        qmax = weight_qmax(ch.w_bits, ch.a_bits)
        if qmax not in cache:
            cache[qmax] = weight_error(w, ch.w_bits, ch.a_bits)
        out.append(cache[qmax])
    return tuple(out)


def perturbations(model: onnx.ModelProto, layers, sens, choices, metric: str) -> tuple[tuple[float, ...], ...]:
    """Ω[layer][choice] = Hessian factor · weight error, from the model's own weights; for a
    perturbation sensitivity file the measured loss change ΔL of each choice."""
    if metric not in METRICS:
        raise InputError(f"--metric {metric!r} is not one of {', '.join(METRICS)}")
    if getattr(sens, "method", None) == "perturbation":
        if metric == "eigen":
            raise InputError("--metric eigen needs a Hessian sensitivity file; this one holds measured ΔL")
        from onnx_hawq.calibration.perturbation import omega_from_delta

        return omega_from_delta(sens, layers, choices)
    out = []
    for layer in layers:
        factor = sensitivity_of(sens, layer, metric)
        if factor == 0.0:  # an insensitive layer (or a cost-only instance): no need to quantize its weights
            out.append((0.0,) * len(choices))
            continue
        errors = weight_errors(weights_of(model, layer), choices)
        out.append(tuple(factor * e for e in errors))
    return tuple(out)
