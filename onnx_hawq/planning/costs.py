"""Per-layer cost models of one bit choice: size in bytes, bit operations, and Ω.

Size counts what the integer rewrite stores for a layer: its weights packed at `w_bits`
(ceil(params · w_bits / 8) bytes), a float32 scale per output channel, and an int32 bias per
output channel when the layer has a bias. BOPs = MACs · w_bits · a_bits (HAWQ-V3).
Ω_i(b) = s_i · ||Q_b(W_i) − W_i||², with s_i the layer's average Hessian trace (or its top
eigenvalue, HAWQ-V1) and Q_b the weights quantize writes for the plan's `WeightQuant`: its code
range, and nearest rounding at max-abs scales or, with rounding gptq, the GPTQ codes at the searched
clipping scales (`weight_error_table`, from the calibration data's layer statistics).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import onnx

from onnx_hawq.errors import InputError
from onnx_hawq.layers import Layer, weights_of
from onnx_hawq.plans import LayerBits
from onnx_hawq.arith.quantizer import Rounding, WeightQuant, dequantized_error, layer_size_bytes, weight_error

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


WeightErrors = dict[str, dict[int, float]]  # layer name -> |code| bound -> ||Q̂(W) − W||²


def weight_errors(w: np.ndarray, choices, weights: WeightQuant) -> tuple[float, ...]:
    """||Q_b(W) − W||² of nearest rounding per choice; choices with the same |w_q| bound share one value."""
    cache: dict[int, float] = {}
    for qmax in (weights.qmax(ch.w_bits, ch.a_bits) for ch in choices):
        if qmax not in cache:
            cache[qmax] = weight_error(w, qmax)
    return tuple(cache[weights.qmax(ch.w_bits, ch.a_bits)] for ch in choices)


def weight_error_table(model: onnx.ModelProto, layers, choices, weights: WeightQuant, data: dict,
                       progress=None) -> WeightErrors:
    """||Q̂_b(W) − W||² of every layer at every distinct |code| bound of `choices`, Q̂ the weights quantize
    writes with `weights` (GPTQ on `data`'s layer statistics, collected once for all bit-widths)."""
    from onnx_hawq.calibration.rounding import RoundingConfig, rounded_weights
    from onnx_hawq.model_io import fixed_batch

    bounds = tuple(sorted({weights.qmax(c.w_bits, c.a_bits) for c in choices}))
    config = RoundingConfig(weights)
    batch = fixed_batch(model)
    if batch:
        config = dataclasses.replace(config, batch_size=batch)
    table = {}
    for layer, deq in rounded_weights(model, layers, {l.name: bounds for l in layers}, data, config, progress):
        w0 = weights_of(model, layer)
        table[layer.name] = {q: dequantized_error(w0, d) for q, d in deq.items()}
    return table


def layer_errors(model, layer: Layer, choices, weights: WeightQuant, table: WeightErrors | None):
    """||Q̂_b(W) − W||² of one layer per choice: from the table under gptq rounding, else nearest."""
    if weights.rounding == Rounding.NEAREST:
        return weight_errors(weights_of(model, layer), choices, weights)
    if table is None or layer.name not in table:
        raise InputError("Ω with --rounding gptq needs calibration data (plan --calib); or plan with "
                         "--rounding nearest")
    return tuple(table[layer.name][weights.qmax(c.w_bits, c.a_bits)] for c in choices)


def perturbations(model: onnx.ModelProto, layers, sens, choices, metric: str, weights: WeightQuant,
                  table: WeightErrors | None = None) -> tuple[tuple[float, ...], ...]:
    """Ω[layer][choice] = Hessian factor · weight error of the `weights` quantizer (`table` holds the
    GPTQ errors); for a perturbation sensitivity file the measured loss change ΔL of each choice."""
    if metric not in METRICS:
        raise InputError(f"--metric {metric!r} is not one of {', '.join(METRICS)}")
    if getattr(sens, "method", None) == "perturbation":
        if metric == "eigen":
            raise InputError("--metric eigen needs a Hessian sensitivity file; this one holds measured ΔL")
        from onnx_hawq.calibration.perturbation import omega_from_delta

        return omega_from_delta(sens, layers, choices, weights)
    out = []
    for layer in layers:
        factor = sensitivity_of(sens, layer, metric)
        if factor == 0.0:  # an insensitive layer (or a cost-only instance): no need to quantize its weights
            out.append((0.0,) * len(choices))
            continue
        out.append(tuple(factor * e for e in layer_errors(model, layer, choices, weights, table)))
    return tuple(out)
