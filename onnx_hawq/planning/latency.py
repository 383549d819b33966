"""The latency table: measured milliseconds per layer and bit choice (`onnx-hawq profile`)."""

from __future__ import annotations

import dataclasses
import math

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError
from onnx_hawq.plans import fingerprint


@dataclasses.dataclass(frozen=True)
class LatencyTable(JsonConfig):
    """Median latency in ms of each layer (isolated) per bit label, e.g. {'conv1': {'w4a8': 0.02}}."""

    KIND = "onnx-hawq-latency"
    VERSION = 1

    model: str
    device: str
    runtime: str
    threads: int
    batch: int
    warmup: int
    runs: int
    layers: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def check_model(self, layers) -> None:
        """Refuse a table measured on another model."""
        if self.model != fingerprint(layers):
            raise InputError("latency table was measured on another model (layer names/shapes differ); "
                             "re-run `onnx-hawq profile` on this model")

    def latency_ns(self, layer: str, label: str) -> int:
        """Latency of `layer` at bit label `label` in integer nanoseconds, rounded up."""
        try:
            ms = self.layers[layer][label]
        except KeyError:
            have = ", ".join(sorted(self.layers.get(layer, {}))) or "none"
            raise InputError(f"latency table lacks layer {layer} at {label} (it has: {have}); "
                             "re-run `onnx-hawq profile` with these --bits/--act-bits") from None
        if not math.isfinite(ms) or ms < 0:
            raise InputError(f"latency table holds an invalid time for {layer} at {label}: {ms!r}")
        return int(math.ceil(ms * 1e6))
