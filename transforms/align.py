"""Scale alignment that makes QLinearAdd and QLinearGlobalAveragePool exact in float32.

QLinearAdd computes fma(a, rA, fma(b, rB, zC - rA*zA - rB*zB)) with rX = float32(SX / SC). If rA
and rB are multiples of a grid g with every intermediate below 2^24 * g, each float32 step is
exact and the result equals the integer form round((nA(a-zA) + nB(b-zB)) / 2^c) + zC. We pick g,
round rA down (SC grows: no clipping) and, when B's producer is a layer that feeds only this Add,
round rB up by moving that layer's output scale. The pool gets the same treatment for x/(y*N).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from onnx_hawq.transforms.annotate import Annotation, Kind, QNode
from onnx_hawq.arith.quantizer import TensorQ

F32 = np.float32


def _grid(ra: float, rb: float, zc: int) -> float:
    magnitude = 510.0 * (abs(ra) + abs(rb)) + 256.0 + zc  # |fixed| + |b*rb| + |a*ra| bound
    return math.ldexp(1.0, math.ceil(math.log2(magnitude)) - 24)


def _solve_divisor(num: float, ratio: float) -> F32 | None:
    """A float32 d with float32(num) / d == ratio exactly (searching ulps around num/ratio)."""
    center = F32(num / ratio)
    up = down = center
    for _ in range(64):
        for d in (up, down):
            if float(F32(num) / d) == ratio:
                return d
        up, down = np.nextafter(up, F32(np.inf)), np.nextafter(down, F32(0))
    return None


def _solve_dividend(ratio: float, den: F32) -> F32 | None:
    """A float32 n with n / float32(den) == ratio exactly."""
    center = F32(ratio * float(den))
    up = down = center
    for _ in range(64):
        for n in (up, down):
            if float(n / den) == ratio:
                return n
        up, down = np.nextafter(up, F32(np.inf)), np.nextafter(down, F32(0))
    return None


def _first(attempt, tries: int = 16):
    """The first non-None attempt(k) for k = 0, 1, ... (neighbouring grid points)."""
    for k in range(tries):
        found = attempt(k)
        if found is not None:
            return found
    return None


def align_add(pa: TensorQ, pb: TensorQ, pc: TensorQ, b_free: bool) -> tuple[TensorQ, TensorQ, bool]:
    """New (B, C) params making the add exact when possible; returns (pb, pc, exact)."""
    ra, rb = float(pa.scale) / float(pc.scale), float(pb.scale) / float(pc.scale)
    g = _grid(ra, rb, pc.zero_point)
    sc = _first(lambda k: _solve_divisor(pa.scale, (math.floor(ra / g) - k) * g) if ra > (k + 1) * g else None)
    if sc is None:
        return pb, pc, False
    pc = dataclasses.replace(pc, scale=float(sc))
    rb_now = float(F32(pb.scale) / sc)
    if rb_now == math.floor(rb_now / g) * g:
        return pb, pc, True
    if not b_free:
        return pb, pc, False
    sb = _first(lambda k: _solve_dividend((math.ceil(rb_now / g) + k) * g, sc))
    if sb is None:
        return pb, pc, False
    return dataclasses.replace(pb, scale=float(sb)), pc, True


def align_gap(px: TensorQ, py: TensorQ, n: int) -> tuple[TensorQ, bool]:
    """Output params whose multiplier x/(y*N) has a significand short enough to be exact."""
    bits = 24 - math.ceil(math.log2(max(px.zero_point, px.qmax - px.zero_point) * n + 1))
    m = float(F32(px.scale) / (F32(py.scale) * F32(n)))
    if bits < 1 or m <= 0:
        return py, False
    mant, exp = math.frexp(m)
    # float32 quotients can step over a target by 2 ulps: try shorter significands and neighbours too
    for k in range(bits, max(bits - 8, 0), -1):
        for j in (0, -1, 1):
            target = math.ldexp(math.floor(mant * 2**k) + j, exp - k)
            sy = _gap_scale(px.scale, target, n) if target > 0 else None
            if sy is not None:
                return dataclasses.replace(py, scale=float(sy)), True
    return py, False


def _gap_scale(x_scale: float, target: float, n: int):
    """A float32 y_scale with float32(x_scale) / (y_scale * n) == target exactly (ulps around the ideal)."""
    up = down = F32(float(x_scale) / (target * n))
    for _ in range(64):
        for sy in (up, down):
            if float(F32(x_scale) / (sy * F32(n))) == target:
                return sy
        up, down = np.nextafter(up, F32(np.inf)), np.nextafter(down, F32(0))
    return None


def _free(qn_by_out: dict, consumers: dict, tensor: str, pinned: set[str] = frozenset()) -> bool:
    producer = qn_by_out.get(tensor)
    return (producer is not None and producer.kind in (Kind.CONV, Kind.GEMM, Kind.MATMUL) and consumers.get(tensor, 0) == 1
            and tensor not in pinned)


def align(ann: Annotation, params: dict[str, TensorQ], spatial: dict[str, int]) -> dict[str, bool]:
    """Adjust `params` in graph order for every Add and global pool; return exactness per output."""
    qn_by_out = {q.out: q for q in ann.qnodes}
    consumers: dict[str, int] = {}
    for q in ann.qnodes:
        for t in q.inputs:
            consumers[t] = consumers.get(t, 0) + 1
    pinned = {t for group in ann.shared for t in group}  # Concat members keep their shared quantizer
    exact = {}
    for q in ann.qnodes:
        if q.kind == Kind.ADD:
            exact[q.out] = _align_one_add(q, params, qn_by_out, consumers, pinned)
        elif q.kind == Kind.GAP and q.inputs[0] in spatial:
            params[q.out], exact[q.out] = align_gap(params[q.inputs[0]], params[q.out], spatial[q.inputs[0]])
    return exact


def _align_one_add(q: QNode, params, qn_by_out, consumers, pinned) -> bool:
    if q.out in pinned:  # aligning moves the output scale off the Concat's shared quantizer
        return False
    a, b = q.inputs
    if not _free(qn_by_out, consumers, b, pinned) and _free(qn_by_out, consumers, a, pinned):
        a, b = b, a
    pb, pc, ok = align_add(params[a], params[b], params[q.out], _free(qn_by_out, consumers, b, pinned))
    params[b], params[q.out] = pb, pc
    return ok
