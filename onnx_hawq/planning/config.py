"""The `plan` command's configuration: limits, candidate bits, ties, pins, sweep."""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from onnx_hawq.arith.quantizer import Rounding, WeightQuant
from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError
from onnx_hawq.planning.limits import Limit

_PIN_BITS = re.compile(r"^(?:w?(\d+))(?:a(\d+))?$")
W_BITS, A_BITS = range(2, 9), (4, 8)  # the widths the rewrite has kernels for


@dataclasses.dataclass(frozen=True)
class Pin(JsonConfig):
    """Layers fixed to `w_bits`; `a_bits` None leaves their activation bits to the solver."""

    names: tuple[str, ...]
    w_bits: int
    a_bits: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class PlanConfig(JsonConfig):
    """Everything `onnx-hawq plan` needs; `sweep` > 0 solves that many budgets instead of one."""

    model: str
    sensitivity: str
    output: str
    max_size: Optional[Limit] = None
    max_bops: Optional[Limit] = None
    max_latency: Optional[Limit] = None
    latency: Optional[str] = None
    bits: tuple[int, ...] = (4, 8)
    act_bits: tuple[int, ...] = (8,)
    metric: str = "trace"
    ties: tuple[tuple[str, ...], ...] = ()
    tie_residual: bool = False
    pins: tuple[Pin, ...] = ()
    sweep: int = 0
    time_limit: float = 30.0
    workers: int = 1
    calib: Optional[str] = None  # calibration data (.npz) for the GPTQ-rounded weights of Ω
    rounding: Optional[str] = None  # gptq | nearest; None: gptq with --calib, else nearest
    weight_range: Optional[str] = None  # full | avx2; None: WeightQuant's default

    def weight_quant(self, measured: WeightQuant | None = None) -> WeightQuant:
        """The weight quantizer Ω measures (and quantize must then use); `measured`: the one a
        perturbation sensitivity file measured, the default then."""
        base = measured or (None if self.calib else WeightQuant(Rounding.NEAREST))
        weights = WeightQuant.of(self.rounding, self.weight_range, base)
        if weights.rounding == Rounding.GPTQ and not self.calib and measured is None:
            raise InputError("--rounding gptq needs --calib calib.npz (GPTQ rounds on the layers' calibration "
                             "inputs)")
        return weights

    def limits(self) -> tuple[Limit, ...]:
        """The limits given, in resource order."""
        return tuple(l for l in (self.max_size, self.max_bops, self.max_latency) if l is not None)


def parse_pin(text: str) -> Pin:
    """'first,last=8' -> Pin(('first', 'last'), 8); 'conv1=w4a8' -> Pin(('conv1',), 4, 8)."""
    names, sep, bits = text.rpartition("=")
    m = _PIN_BITS.match(bits.strip().lower())
    layer_names = tuple(n.strip() for n in names.split(",") if n.strip())
    if not sep or not m or not layer_names:
        raise InputError(f"--pin {text!r} is not LAYER[,LAYER...]=BITS (e.g. first,last=8 or conv1=w4a8)")
    w_bits, a_bits = int(m.group(1)), int(m.group(2)) if m.group(2) else None
    if w_bits not in W_BITS:  # a width outside --bits is fine, one without a kernel is not
        raise InputError(f"--pin {text!r} is not LAYER=BITS with a supported width: weight bits {w_bits} "
                         f"unsupported (use 2..8)")
    if a_bits is not None and a_bits not in A_BITS:
        raise InputError(f"--pin {text!r} is not LAYER=BITS with a supported width: activation bits {a_bits} "
                         f"unsupported (use 4 or 8)")
    return Pin(layer_names, w_bits, a_bits)


def parse_tie(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); a tie needs two or more distinct layers."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if len(names) < 2:
        raise InputError(f"--tie {text!r} needs two or more comma-separated layer names")
    return names


def parse_bits(text: str, option: str) -> tuple[int, ...]:
    """'2,4,8' -> (2, 4, 8)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip():
        raise InputError(f"{option} is empty")
    if not all(items):
        raise InputError(f"{option} {text!r} has an empty entry; give widths such as 4,8")
    try:
        return tuple(sorted({int(t) for t in items}))
    except ValueError:
        raise InputError(f"{option} {text!r} is not a comma-separated list of integers") from None
