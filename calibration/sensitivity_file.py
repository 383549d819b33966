"""The sensitivity file: per-layer Hessian statistics keyed by the plan's layer names.

Readable without torch (the planner uses it). Written atomically by `save`. A file of method
``perturbation`` holds, per layer, the measured loss change ``delta_loss`` of each weight quantizer
(keys like ``"w4a8"``, `onnx_hawq.plans.LayerBits.label`) instead of Hessian statistics; the fields
it adds are left out of a Hessian file, which stays as before (version 1 either way).
"""

from __future__ import annotations

import dataclasses

from onnx_hawq.arith.quantizer import WeightQuant
from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError, close_matches
from onnx_hawq.layers import Layer
from onnx_hawq.plans import fingerprint


@dataclasses.dataclass(frozen=True)
class LayerSensitivity(JsonConfig):
    """Hessian statistics of one layer; `trace` is the average trace (total / params)."""

    trace: float
    stderr: float = 0.0  # standard error of `trace`
    samples: int = 0  # Hutchinson vectors used (method perturbation: calibration samples)
    params: int = 0
    eigenvalue: float | None = None  # top Hessian eigenvalue of the layer block
    eigen_iters: int | None = None
    delta_loss: dict[str, float] | None = None  # method perturbation: "w{b}a{a}" -> measured loss change

    def to_dict(self) -> dict:
        return _without_none(super().to_dict(), ("delta_loss",))


@dataclasses.dataclass(frozen=True)
class Sensitivity(JsonConfig):
    """Per-layer sensitivities of one model (`model` is `onnx_hawq.plans.fingerprint`)."""

    KIND = "onnx-hawq-sensitivity"
    VERSION = 1

    model: str
    method: str  # trace | eigen | both | perturbation
    layers: dict[str, LayerSensitivity] = dataclasses.field(default_factory=dict)
    seed: int = 0
    source: str = ""  # "torch:<module:factory>" or "onnx"
    hvp_count: int = 0
    loss: str | None = None  # method perturbation: the loss whose change was measured (kl | mse)
    weights: WeightQuant | None = None  # method perturbation: the weight quantizer measured

    def to_dict(self) -> dict:
        return _without_none(super().to_dict(), ("loss", "weights"))

    def check_model(self, layers: list[Layer]) -> None:
        """Refuse a sensitivity file made for a different model."""
        if self.model != fingerprint(layers):
            raise InputError(
                "sensitivity file was computed for another model (layer names/shapes differ); "
                "re-run `onnx-hawq sensitivity` on this model"
            )
        missing = [l.name for l in layers if l.name not in self.layers]
        if missing:
            raise InputError(f"sensitivity file lacks layer(s): {', '.join(missing)}")
        names = {l.name for l in layers}
        extra = [n for n in self.layers if n not in names]
        if extra:
            hints = "; ".join(f"{n}{close_matches(n, names)}" for n in extra)
            raise InputError(f"sensitivity file names layer(s) the model does not have: {hints}")


def _without_none(d: dict, keys) -> dict:
    """`d` without those of `keys` whose value is None (fields older files do not have)."""
    return {k: v for k, v in d.items() if not (k in keys and v is None)}
