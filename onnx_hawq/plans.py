"""The plan: weight and activation bits per layer, as a versioned JSON file."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError, close_matches
from onnx_hawq.layers import Layer
from onnx_hawq.arith.quantizer import ACT_BITS, WEIGHT_BITS, Rounding, WeightQuant, WeightRange

# what the planner's Ω measured before plans recorded it: nearest rounding, 8-bit weights capped at 64
LEGACY_WEIGHTS = WeightQuant(Rounding.NEAREST, WeightRange.AVX2)


@dataclasses.dataclass(frozen=True)
class LayerBits(JsonConfig):
    """Bits of one layer: its weights and its input activation."""

    w_bits: int = 8
    a_bits: int = 8

    def __post_init__(self):
        if self.w_bits not in WEIGHT_BITS:
            raise InputError(f"weight bits {self.w_bits} unsupported (use 2..8)")
        if self.a_bits not in ACT_BITS:
            raise InputError(f"activation bits {self.a_bits} unsupported (use 4 or 8)")

    def label(self) -> str:
        return f"w{self.w_bits}a{self.a_bits}"


@dataclasses.dataclass(frozen=True)
class Plan(JsonConfig):
    """Per-layer bits plus defaults; `model` fingerprints the layers the plan was made for; `weights`
    is the weight quantizer (rounding, range) the planner's Ω measured."""

    KIND = "onnx-hawq-plan"
    VERSION = 1

    default: LayerBits = LayerBits()
    layers: dict[str, LayerBits] = dataclasses.field(default_factory=dict)
    model: str | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: WeightQuant | None = None

    def weight_quant(self) -> WeightQuant | None:
        """The quantizer the plan's Ω was computed for: recorded, else (a planner's plan from before the
        record, with an objective in its meta) nearest/avx2; None for a plan written by hand."""
        if self.weights is not None:
            return self.weights
        return LEGACY_WEIGHTS if "objective" in self.meta else None

    def histogram(self) -> dict[str, int]:
        """How many layers take each bit choice, e.g. {'w4a8': 5, 'w8a8': 2}."""
        counts: dict[str, int] = {}
        for bits in self.layers.values():
            counts[bits.label()] = counts.get(bits.label(), 0) + 1
        return counts

    def resolve(self, layers: list[Layer]) -> dict[str, LayerBits]:
        """Bits for every layer of the model; unknown names or another model's plan are errors."""
        if self.model and self.model != fingerprint(layers):
            raise InputError(
                "plan was made for another model (layer names/shapes differ); "
                "re-run `onnx-hawq plan` on this model"
            )
        aliases = {}
        for layer in layers:
            for key in (layer.name, layer.weight, layer.node_name):
                if key:
                    aliases.setdefault(key, layer.name)
        unknown = [k for k in self.layers if k not in aliases]
        if unknown:
            hints = "; ".join(f"{k}{close_matches(k, [l.name for l in layers])}" for k in unknown)
            raise InputError(f"plan names layer(s) not in the model: {hints}")
        out = {layer.name: self.default for layer in layers}
        for key, bits in self.layers.items():
            out[aliases[key]] = bits
        return out


def fingerprint(layers: list[Layer]) -> str:
    """A short hash of the layer names and weight shapes (identifies the model's layers)."""
    text = ";".join(f"{l.name}:{'x'.join(map(str, l.weight_shape))}" for l in layers)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_UNIFORM = re.compile(r"^(?:w?(\d))(?:a(\d))?$")


def uniform_plan(spec: str) -> Plan:
    """'8' -> W8A8, 'w4a8' -> W4A8, 'w4' -> W4A8: the same bits for every layer."""
    m = _UNIFORM.match(spec.strip().lower())
    if not m:
        raise InputError(f"--bits {spec!r} is not a bit spec (examples: 8, w4a8, w8a4)")
    w = int(m.group(1))
    a = int(m.group(2)) if m.group(2) else (w if w in ACT_BITS and not spec.lower().startswith("w") else 8)
    return Plan(default=LayerBits(w, a))
