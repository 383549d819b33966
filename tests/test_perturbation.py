"""Ω from the model's own weights, the size/BOPs cost models, and limit strings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.errors import InputError
from onnx_hawq.layers import weights_of
from onnx_hawq.plans import LayerBits, fingerprint
from onnx_hawq.planning.costs import bops, candidate_choices, perturbations, size_bytes
from onnx_hawq.planning.instance import load_prepared
from onnx_hawq.planning.limits import Limit, format_amount, parse_limit
from onnx_hawq.arith.quantizer import Rounding, WeightQuant, WeightRange, weight_error

MODEL = Path(__file__).resolve().parents[1] / "sample_models" / "digits_resnet.onnx"
NEAREST = WeightQuant(Rounding.NEAREST)


@pytest.fixture(scope="module")
def prepared():
    return load_prepared(str(MODEL))


def sensitivity(layers, trace=1.0, eigen=None) -> Sensitivity:
    return Sensitivity(model=fingerprint(layers), method="both",
                       layers={l.name: LayerSensitivity(trace=trace * (i + 1), eigenvalue=eigen)
                               for i, l in enumerate(layers)})


@pytest.mark.parametrize("weight_range", list(WeightRange))
def test_omega_is_trace_times_rewrite_quantizer_error(prepared, weight_range):
    model, layers = prepared
    choices = candidate_choices((2, 4, 8), (4, 8))
    weights = WeightQuant(Rounding.NEAREST, weight_range)
    omega = perturbations(model, layers, sensitivity(layers, 0.5), choices, "trace", weights)
    for i, layer in enumerate(layers):
        w = weights_of(model, layer)
        for k, ch in enumerate(choices):
            want = 0.5 * (i + 1) * weight_error(w, weights.qmax(ch.w_bits, ch.a_bits))
            assert omega[i][k] == pytest.approx(want, rel=1e-12)
    w8a8, w8a4 = choices.index(LayerBits(8, 8)), choices.index(LayerBits(8, 4))
    same = [row[w8a8] == row[w8a4] for row in omega]  # full range: one 127-level quantizer for both
    assert all(same) if weight_range == WeightRange.FULL else not any(same)


def test_omega_falls_with_more_bits(prepared):
    model, layers = prepared
    choices = candidate_choices((2, 3, 4, 5, 8), (8,))
    omega = np.array(perturbations(model, layers, sensitivity(layers), choices, "trace", NEAREST))
    assert np.all(np.diff(omega, axis=1) < 0)


def test_eigen_metric_uses_eigenvalue_and_needs_it(prepared):
    model, layers = prepared
    choices = candidate_choices((4,), (8,))
    with_eig = perturbations(model, layers, sensitivity(layers, trace=1.0, eigen=3.0), choices, "eigen", NEAREST)
    trace = perturbations(model, layers, sensitivity(layers, trace=1.0), choices, "trace", NEAREST)
    assert with_eig[0][0] == pytest.approx(3.0 * trace[0][0])
    with pytest.raises(InputError, match="no eigenvalue"):
        perturbations(model, layers, sensitivity(layers), choices, "eigen", NEAREST)


def test_negative_trace_counts_as_insensitive(prepared):
    model, layers = prepared
    omega = perturbations(model, layers, sensitivity(layers, trace=-1.0), candidate_choices((4,), (8,)), "trace",
                          NEAREST)
    assert all(row == (0.0,) for row in omega)


def test_size_and_bops_of_a_known_layer(prepared):
    _, layers = prepared
    conv1 = layers[0]  # 16x1x3x3 with bias, 9,216 MACs
    assert conv1.weight_shape == (16, 1, 3, 3) and conv1.bias
    per_channel = 16 * (4 + 1 + 4)  # float32 scale, int8 zero point, int32 bias
    assert size_bytes(conv1, 4) == 144 * 4 // 8 + per_channel
    assert size_bytes(conv1, 3) == size_bytes(conv1, 4)  # 2-4-bit weights are stored as INT4
    assert size_bytes(conv1, 6) == 144 + per_channel  # 5-7-bit weights in int8 containers
    assert bops(conv1, 4, 8) == 9216 * 32


def test_choices_are_pairs_and_reject_bad_bits():
    assert candidate_choices((8, 4), (8,)) == (LayerBits(4, 8), LayerBits(8, 8))
    with pytest.raises(InputError):
        candidate_choices((9,), (8,))
    with pytest.raises(InputError):
        candidate_choices((4,), (6,))


@pytest.mark.parametrize("resource,text,expected", [
    ("size", "40KB", 40_000), ("size", "2MiB", 2 * 2**20), ("size", "1234", 1234), ("size", "1.5 mb", 1_500_000),
    ("bops", "1.2G", 1_200_000_000), ("bops", "3e9", 3_000_000_000),
    ("latency", "1.5ms", 1_500_000), ("latency", "800us", 800_000), ("latency", "2", 2_000_000),
])
def test_parse_limits(resource, text, expected):
    assert parse_limit(resource, text).resolve(0, 0) == expected


def test_percent_limits_are_alpha_between_smallest_and_w8a8():
    limit = parse_limit("size", "50%")
    assert limit == Limit("size", 50.0, percent=True)
    assert limit.resolve(20_641, 10_940) == 10_940 + (20_641 - 10_940) // 2
    assert limit.resolve(100, 200) == 200  # W8A8 below the smallest plan: the smallest plan
    assert Limit.from_dict(limit.to_dict()) == limit


def test_percent_w8a8_limits_use_the_w8a8_model():
    limit = parse_limit("size", "50%W8A8")
    assert limit == Limit("size", 50.0, percent=True, of_w8a8=True)
    assert limit.resolve(20_641, 10_940) == 10_320
    assert Limit.from_dict(limit.to_dict()) == limit


@pytest.mark.parametrize("text", ["12 parsecs", "KB", "-5KB", "0", "50 %%", "1e999"])
def test_bad_limit_strings(text):
    with pytest.raises(InputError, match="--max-size"):
        parse_limit("size", text)


def test_format_amount():
    assert format_amount("size", 12_345) == "12.35 KB"
    assert format_amount("bops", 3e9) == "3 GBOPs"
    assert format_amount("latency", 1_500_000) == "1.5 ms"
