"""The weight quantizer shared by the rewrite and the planner: symmetric, per output channel.

ORT's x86 u8 x s8 kernels add two u8*s8 products in int16 (vpmaddubsw), so a layer is exact in
onnxruntime only while 2 * max|x_q| * max|w_q| <= 32767. Activations live in uint8 [0, 2^a - 1];
for an 8-bit activation feeding 8-bit weights we therefore cap |w_q| at 64 (2*255*64 = 32640),
which keeps the fast u8 x s8 kernel exact. Narrower weights or activations need no cap.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INT16_MAX = 32767
WEIGHT_BITS = (2, 3, 4, 5, 6, 7, 8)
ACT_BITS = (4, 8)


def act_qmax(a_bits: int) -> int:
    """Largest uint8 code an `a_bits` activation may take."""
    return (1 << a_bits) - 1


def weight_qmax(w_bits: int, a_bits: int = 8) -> int:
    """Largest |w_q| for `w_bits` weights whose input activation has `a_bits` bits."""
    qmax = (1 << (w_bits - 1)) - 1
    return min(qmax, INT16_MAX // (2 * act_qmax(a_bits)))


def weight_form(w_bits: int, a_bits: int = 8) -> str:
    """Human-readable kernel form of a layer, e.g. 'u8s8' or 'u8s8(|w|<=64)'."""
    qmax = weight_qmax(w_bits, a_bits)
    full = (1 << (w_bits - 1)) - 1
    return "u8s8" if qmax == full else f"u8s8(|w|<={qmax})"


def channel_scales(w: np.ndarray, qmax: int) -> np.ndarray:
    """Per-output-channel scales (axis 0) that map max|w| onto qmax; never zero."""
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    flat = np.where(flat > 0, flat, 1.0)
    return flat / qmax


def quantize_weight(w: np.ndarray, scales: np.ndarray, qmax: int) -> np.ndarray:
    """Round w / scale (round-half-even) and clip to [-qmax, qmax]; int8, axis 0 = channels."""
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.rint(w.astype(np.float64) / scales.reshape(shape))
    return np.clip(q, -qmax, qmax).astype(np.int8)


def fake_quantize(w: np.ndarray, w_bits: int, a_bits: int = 8) -> np.ndarray:
    """Q_b(W): quantize then dequantize with the rewrite's quantizer (axis 0 = out channels)."""
    qmax = weight_qmax(w_bits, a_bits)
    scales = channel_scales(w, qmax)
    shape = (-1,) + (1,) * (w.ndim - 1)
    return (quantize_weight(w, scales, qmax).astype(np.float64) * scales.reshape(shape)).astype(np.float32)


def weight_error(w: np.ndarray, w_bits: int, a_bits: int = 8) -> float:
    """||Q_b(W) - W||^2, the perturbation that HAWQ weights by the Hessian trace."""
    d = fake_quantize(w, w_bits, a_bits).astype(np.float64) - w.astype(np.float64)
    return float(np.sum(d * d))


@dataclasses.dataclass(frozen=True)
class TensorQ:
    """uint8 quantization of one activation tensor: real = (q - zero_point) * scale."""

    scale: float  # float32 value
    zero_point: int
    bits: int

    @property
    def qmax(self) -> int:
        return act_qmax(self.bits)


def activation_params(lo: float, hi: float, bits: int) -> TensorQ:
    """Asymmetric uint8 params covering [min(lo,0), max(hi,0)]; zero-point 0 for non-negative data."""
    qmax = act_qmax(bits)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    scale = np.float32((hi - lo) / qmax)
    zp = 0 if lo == 0 else int(np.clip(round(-lo / float(scale)), 0, qmax))
    return TensorQ(float(scale), zp, bits)


def storage_bits(w_bits: int) -> int:
    """Bits a weight takes on disk: 2-4-bit weights are packed as INT4, wider ones kept in int8."""
    return 4 if w_bits <= 4 else 8


def layer_size_bytes(params: int, channels: int, w_bits: int, bias: bool) -> int:
    """The size model shared by the planner and the rewrite, counting what is written: the weights
    in their storage type, a float32 scale and an int8 zero point per output channel, and an int32
    bias per channel when the layer has one."""
    return int(np.ceil(params * storage_bits(w_bits) / 8)) + 5 * channels + (4 * channels if bias else 0)


@dataclasses.dataclass(frozen=True)
class RoundedWeights:
    """A layer's codes (output channels on axis 0), the scales they were rounded at, and the float
    shift to add to its bias (zeros without bias correction)."""

    codes: np.ndarray
    scales: np.ndarray
    bias_shift: np.ndarray
    shipped: bool = False  # `scales` are already the exact-dyadic ones the rewrite writes
