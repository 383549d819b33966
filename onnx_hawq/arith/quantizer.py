"""The weight quantizer shared by the rewrite and the planner: symmetric, per output channel.

Weights use the full range |w_q| <= 2^(b-1) - 1 (`WeightRange.FULL`) where onnxruntime's u8 x s8
kernels accumulate in int32 (AVX512-VNNI, AVX-VNNI, AMX-INT8; non-x86): exact at that range, as are
the integer form and TVM everywhere. The AVX2-only kernel adds two u8*s8 products in int16 (vpmaddubsw),
exact only while 2 * max|x_q| * max|w_q| <= 32767: `WeightRange.AVX2` caps 8-bit weights fed by 8-bit
activations at 64 (2*255*64 = 32640). Narrower weights or activations never need the cap. The default
is the range this host's onnxruntime is exact at (`host_weight_range`), so a model validated here
behaves as measured; pass the range of the deployment target explicitly when it differs.
`WeightQuant` (rounding + range) is the one record of how weights are quantized.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import platform
from pathlib import Path

import numpy as np

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError

INT16_MAX = 32767
WEIGHT_BITS = (2, 3, 4, 5, 6, 7, 8)
ACT_BITS = (4, 8)


def act_qmax(a_bits: int) -> int:
    """Largest uint8 code an `a_bits` activation may take."""
    return (1 << a_bits) - 1


class WeightRange(str, enum.Enum):
    """The |w_q| bound: FULL every code of the bit-width; AVX2 caps 8-bit weights on 8-bit activations
    at 64 so onnxruntime's AVX2 u8 x s8 kernel (int16 pair sums) cannot saturate."""

    FULL = "full"
    AVX2 = "avx2"


INT32_U8S8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 flags of an int32-accumulating u8s8 kernel


def cpu_flags() -> set[str]:
    """The x86 feature flags of this CPU from /proc/cpuinfo (empty where it cannot tell)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


@functools.lru_cache(maxsize=1)
def host_weight_range() -> "WeightRange":
    """AVX2 on an x86 host whose flags show no int32-accumulating u8s8 kernel, else FULL."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
    flags = cpu_flags()
    return WeightRange.AVX2 if x86 and flags and not flags & set(INT32_U8S8_FLAGS) else WeightRange.FULL


class Rounding(str, enum.Enum):
    """How weights are rounded: nearest at max-abs scales, or GPTQ with clipping-scale search."""

    NEAREST = "nearest"
    GPTQ = "gptq"


def _enum(kind, value, option: str):
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{option} {value!r}: use one of {', '.join(k.value for k in kind)}") from None


def weight_qmax(w_bits: int, a_bits: int, weight_range: WeightRange) -> int:
    """Largest |w_q| for `w_bits` weights whose input activation has `a_bits` bits."""
    qmax = (1 << (w_bits - 1)) - 1
    if WeightRange(weight_range) == WeightRange.AVX2:
        return min(qmax, INT16_MAX // (2 * act_qmax(a_bits)))
    return qmax


def int16_exact(w_bits: int, a_bits: int, weight_range: WeightRange) -> bool:
    """Whether AVX2's int16 pair sums cannot saturate: 2 * max|x_q| * max|w_q| <= 32767."""
    return 2 * act_qmax(a_bits) * weight_qmax(w_bits, a_bits, weight_range) <= INT16_MAX


FULL_RANGE_FORM = "u8s8(vnni|amx)"


def weight_form(w_bits: int, a_bits: int, weight_range: WeightRange) -> str:
    """Human-readable kernel form of a layer: 'u8s8' (exact on every x86 kernel), 'u8s8(|w|<=64)' (capped
    for AVX2) or 'u8s8(vnni|amx)' (full range, exact where u8 x s8 accumulates in int32)."""
    qmax = weight_qmax(w_bits, a_bits, weight_range)
    if not int16_exact(w_bits, a_bits, weight_range):
        return FULL_RANGE_FORM
    return "u8s8" if qmax == (1 << (w_bits - 1)) - 1 else f"u8s8(|w|<={qmax})"


@dataclasses.dataclass(frozen=True)
class WeightQuant(JsonConfig):
    """How weights are quantized: the rounding and the code range (plan, quantize and auto share it)."""

    rounding: Rounding = Rounding.GPTQ
    range: WeightRange = dataclasses.field(default_factory=lambda: host_weight_range())

    def __post_init__(self):
        object.__setattr__(self, "rounding", _enum(Rounding, self.rounding, "--rounding"))
        object.__setattr__(self, "range", _enum(WeightRange, self.range, "--weight-range"))

    @classmethod
    def of(cls, rounding: str | None = None, weight_range: str | None = None,
           base: "WeightQuant | None" = None) -> "WeightQuant":
        """The given fields, the others from `base` (else the defaults)."""
        base = base or cls()
        return cls(rounding or base.rounding, weight_range or base.range)

    def qmax(self, w_bits: int, a_bits: int) -> int:
        return weight_qmax(w_bits, a_bits, self.range)

    def label(self) -> str:
        return f"--rounding {self.rounding.value} --weight-range {self.range.value}"


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


def fake_quantize(w: np.ndarray, qmax: int) -> np.ndarray:
    """Q_b(W): round to nearest at max-abs scales for the |code| bound `qmax`, then dequantize
    (axis 0 = out channels)."""
    scales = channel_scales(w, qmax)
    shape = (-1,) + (1,) * (w.ndim - 1)
    return (quantize_weight(w, scales, qmax).astype(np.float64) * scales.reshape(shape)).astype(np.float32)


def weight_error(w: np.ndarray, qmax: int) -> float:
    """||Q_b(W) - W||^2 of nearest rounding at |code| bound `qmax`: the perturbation HAWQ weights by
    the Hessian trace."""
    return dequantized_error(w, fake_quantize(w, qmax))


def dequantized_error(w: np.ndarray, q: np.ndarray) -> float:
    """||q - w||^2 in float64."""
    d = np.asarray(q, np.float64) - np.asarray(w, np.float64)
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
