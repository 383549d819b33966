"""arith.requant and compile.ranges: exact rounding, bounds, the Add/GAP programs, value ranges."""

from fractions import Fraction

import numpy as np
import pytest
from onnx import helper

from onnx_hawq import reference
from onnx_hawq.arith.requant import (acc_bounds, add_program, apply_requant, float_exact, gap_program, requant_of,
                                       rne_shift, run_add, run_gap)
from onnx_hawq.value_ranges import node_input_ranges, uint8_ranges
from tests.compile.qgraphs import U8, f32, typed_model
from tests.helpers import rng


def _rne(v: int, c: int) -> int:
    q = Fraction(v, 2**c)
    lo = q.numerator // q.denominator
    rest = q - lo
    return lo + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and lo % 2) else 0)


def test_rne_shift_rounds_half_to_even_exactly():
    r = rng(0)
    c = r.integers(1, 40, 3000)
    v = r.integers(-(2**50), 2**50, 3000)
    ties = np.array([(2 * k + 1) << 4 for k in range(-20, 20)], np.int64)  # k + 1/2 at c = 5
    got = np.concatenate([rne_shift(v, c), rne_shift(ties, 5)])
    want = [_rne(int(a), int(b)) for a, b in zip(v, c)] + [_rne(int(t), 5) for t in ties]
    assert got.tolist() == want


def test_requant_matches_onnxruntime_float_form_when_exact():
    mult = f32([3 * 2.0**-12, 1.5, 5.0, 2.0**-20])  # includes multipliers >= 1 (c <= 0 before normalising)
    req = requant_of(mult, 17)
    assert np.all(req.c >= 1)
    acc = rng(1).integers(-3000, 3000, (64, 4)).astype(np.int32)
    np.testing.assert_array_equal(apply_requant(acc, req), reference.requantize(acc, mult, 17))


def test_acc_bounds_are_attained_and_sound():
    r = rng(2)
    w, bias, zp = r.integers(-64, 65, (5, 27)), r.integers(-999, 999, 5), 9
    lo, hi = acc_bounds(w, bias, zp, (3, 200))
    x_hi, x_lo = np.where(w > 0, 200, 3), np.where(w > 0, 3, 200)
    np.testing.assert_array_equal(hi, ((x_hi - zp) * w).sum(1) + bias)
    np.testing.assert_array_equal(lo, ((x_lo - zp) * w).sum(1) + bias)
    x = r.integers(3, 201, (500, 27))
    acc = (x - zp) @ w.T + bias
    assert np.all(acc >= lo) and np.all(acc <= hi)


def test_float_exact_boundary():
    assert float_exact(np.array([-(2**12)]), np.array([2**12 - 1]), np.array([2**12 - 1]))
    assert not float_exact(np.array([-(2**12)]), np.array([10]), np.array([2**12]))


@pytest.mark.parametrize("params,table", [((0.05, 10, 0.025, 3, 0.1, 0), False),
                                          ((0.0635, 0, 0.0404, 0, 0.0452, 0), True)])
def test_add_program_equals_the_reference_on_every_pair(params, table):
    a_s, a_z, b_s, b_z, c_s, c_z = (f32(v) if i % 2 == 0 else np.uint8(v) for i, v in enumerate(params))
    prog = add_program(a_s, a_z, b_s, b_z, c_s, c_z)
    assert (prog.table is not None) == table
    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    np.testing.assert_array_equal(run_add(prog, a, b), reference.qlinear_add(a, a_s, a_z, b, b_s, b_z, c_s, c_z))


@pytest.mark.parametrize("params,table", [((0.05, 10, 0.025, 3), False), ((0.0315, 0, 0.0889, 0), True)])
def test_gap_program_equals_the_reference_on_every_sum(params, table):
    xs, xz, ys, yz = f32(params[0]), np.uint8(params[1]), f32(params[2]), np.uint8(params[3])
    prog = gap_program(xs, xz, ys, yz, 16)
    assert (prog.table is not None) == table
    s = np.arange(255 * 16 + 1)
    x = np.clip(s[:, None] - 255 * np.arange(16)[None, :], 0, 255).astype(np.uint8).reshape(1, -1, 4, 4)
    np.testing.assert_array_equal(run_gap(prog, s), reference.qlinear_gap(x, xs, xz, ys, yz).reshape(-1))


def test_value_ranges_follow_clip_pass_through_and_max():
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"], name="clip"),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], name="pool"),
             helper.make_node("Max", ["p", "floor"], ["m"], name="max"),
             helper.make_node("Flatten", ["m"], ["f"], name="flat"),
             helper.make_node("Add", ["f", "f"], ["y"], name="add")]
    inits = {"lo": np.uint8(2), "hi": np.uint8(15), "floor": np.uint8(4)}
    model = typed_model(nodes, [("x", U8, [1, 1, 4, 4])], [("y", U8, [1, 4])], inits)
    assert uint8_ranges(model) == {"c": (2, 15), "p": (2, 15), "m": (4, 15), "f": (4, 15)}
    assert node_input_ranges(model) == {"clip": (0, 255), "pool": (2, 15), "max": (2, 15), "flat": (4, 15),
                                        "add": (4, 15)}


def test_concat_spans_its_inputs_ranges():
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["a"]), helper.make_node("Clip", ["x", "lo2", "hi2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Concat", ["c", "x"], ["d"], axis=1)]
    inits = {"lo": np.uint8(2), "hi": np.uint8(15), "lo2": np.uint8(0), "hi2": np.uint8(9)}
    model = typed_model(nodes, [("x", U8, [1, 2])], [("d", U8, [1, 6])], inits)
    ranges = uint8_ranges(model)
    assert ranges["c"] == (0, 15) and "d" not in ranges  # x may take any uint8 value
