"""Limit strings (`--max-size 40KB`, `--max-bops 50%`, `--max-latency 1.5ms`) and their units.

Sizes: bytes, or with a unit B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
BOPs: a number with an optional K, M, G, T suffix (powers of 1000). Latency: milliseconds, or
with a unit us, ms, s. Any limit may be `N%`: N% of the way from the smallest plan the bits allow
(every layer at its lowest bits, pins and ties respected) to the all-8-bit (W8A8) model, HAWQ-V3's
``total_low + α·(total_8bit − total_low)``; or `N%W8A8`: that percentage of the W8A8 model itself.
Internally sizes and BOPs are integers, latency is integer nanoseconds.
"""

from __future__ import annotations

import dataclasses
import math
import re

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError

RESOURCES = ("size", "bops", "latency")
OPTIONS = {"size": "--max-size", "bops": "--max-bops", "latency": "--max-latency"}
_UNITS = {
    "size": {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30},
    "bops": {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12},
    "latency": {"": 10**6, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9},
}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z%0-9]*)\s*$")
OF_W8A8 = "%w8a8"
PERCENT_HELP = (" N% is N% of the way from the smallest plan the bits allow to the all-8-bit model "
                "(HAWQ-V3's α); N%W8A8 is that share of the all-8-bit model.")


@dataclasses.dataclass(frozen=True)
class Limit(JsonConfig):
    """One limit: `value` in base units (bytes, BOPs, ns), or a percentage (α of the way from the
    smallest plan to W8A8, or with `of_w8a8` a share of the W8A8 model)."""

    resource: str
    value: float
    percent: bool = False
    of_w8a8: bool = False

    def resolve(self, all8: int, lowest: int) -> int:
        """The limit in integer base units (rounded down: a plan never exceeds it)."""
        if not self.percent:
            raw = self.value
        elif self.of_w8a8:
            raw = self.value / 100 * all8
        else:
            raw = interpolate(lowest, all8, self.value / 100)
        return int(math.floor(raw + 1e-9))


def interpolate(lowest: float, all8: float, alpha: float) -> float:
    """lowest + α·(all8 − lowest): the budget α of the way from the smallest plan to W8A8."""
    return lowest + alpha * (max(all8, lowest) - lowest)


def parse_limit(resource: str, text: str) -> Limit:
    """'40KB' -> Limit('size', 40000); '50%' -> Limit(..., 50, percent=True)."""
    m = _NUMBER.match(text.lower())
    units = _UNITS[resource]
    if not m or (m.group(2) not in units and m.group(2) not in ("%", OF_W8A8)):
        raise InputError(f"{OPTIONS[resource]} {text!r} is not a {resource} limit "
                         f"(units: {', '.join(u for u in units if u) or 'none'}, or N% or N%W8A8)")
    value = float(m.group(1))
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{OPTIONS[resource]} {text!r} must be positive")
    if m.group(2) in ("%", OF_W8A8):
        return Limit(resource, value, percent=True, of_w8a8=m.group(2) == OF_W8A8)
    return Limit(resource, value * units[m.group(2)])


def format_amount(resource: str, value: float) -> str:
    """A base-unit amount for people: '12.3 KB', '4.56 GBOPs', '1.234 ms'."""
    if resource == "latency":
        return f"{value / 1e6:.4g} ms"
    if resource == "size":
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
            if value >= scale:
                return f"{value / scale:.4g} {unit}"
        return f"{int(value)} bytes"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.4g} {unit}BOPs"
    return f"{int(value)} BOPs"
