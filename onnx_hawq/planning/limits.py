"""Limit strings (`--max-size 40KB`, `--max-bops 50%`, `--max-latency 1.5ms`) and their units.

Sizes: bytes, or with a unit B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
BOPs: a number with an optional K, M, G, T suffix (powers of 1000). Latency: milliseconds, or
with a unit us, ms, s. Any limit may be `N%`: that percentage of the all-8-bit (W8A8) model.
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
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z%]*)\s*$")


@dataclasses.dataclass(frozen=True)
class Limit(JsonConfig):
    """One limit: `value` in base units (bytes, BOPs, ns), or a percentage of the W8A8 model."""

    resource: str
    value: float
    percent: bool = False

    def resolve(self, all8: int) -> int:
        """The limit in integer base units (rounded down: a plan never exceeds it)."""
        raw = self.value / 100 * all8 if self.percent else self.value
        return int(math.floor(raw + 1e-9))


def parse_limit(resource: str, text: str) -> Limit:
    """'40KB' -> Limit('size', 40000); '50%' -> Limit(..., 50, percent=True)."""
    m = _NUMBER.match(text.lower())
    units = _UNITS[resource]
    if not m or (m.group(2) not in units and m.group(2) != "%"):
        raise InputError(f"{OPTIONS[resource]} {text!r} is not a {resource} limit "
                         f"(units: {', '.join(u for u in units if u) or 'none'}, or N%)")
    value = float(m.group(1))
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{OPTIONS[resource]} {text!r} must be positive")
    if m.group(2) == "%":
        return Limit(resource, value, percent=True)
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
