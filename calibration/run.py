"""`onnx-hawq sensitivity` as one library call: config in, sensitivity file (and plot) out.

Importing this module does not import torch; the routes do, when run.
"""

from __future__ import annotations

import dataclasses
import logging

from onnx_hawq.calibration.hessian import HessianConfig, HessianResult
from onnx_hawq.calibration.sensitivity_file import Sensitivity
from onnx_hawq.config import JsonConfig, atomic_write_bytes
from onnx_hawq.errors import InputError
from onnx_hawq.layers import find_layers
from onnx_hawq.model_io import check_output_path, load_data, load_model
from onnx_hawq.plan import fingerprint

log = logging.getLogger("onnx_hawq")
LOSSES = ("kl", "mse")


@dataclasses.dataclass(frozen=True)
class SensitivityConfig(JsonConfig):
    """Inputs, route and stopping rules of one sensitivity run."""

    model: str  # the ONNX model (names and fingerprints the layers)
    output: str  # sensitivity JSON to write
    torch_factory: str | None = None  # "module:function" returning (model, data, loss)
    data: str | None = None  # .npz of model inputs (ONNX route)
    labels: str | None = None  # key of integer labels in `data`; None -> `loss` to own outputs
    loss: str = "kl"  # without labels: "kl" (softmax outputs, classifiers) or "mse" (embeddings, regression)
    batch_size: int = 64  # ONNX route: samples per batch
    batches: int | None = 4  # batches used (None: all)
    hessian: HessianConfig = HessianConfig()
    plot: str | None = None  # PNG bar plot to write
    progress: bool = True

    def __post_init__(self):
        if (self.torch_factory is None) == (self.data is None):
            raise InputError("give exactly one of --torch MODULE:FACTORY or --data DATA.npz")
        if self.labels is not None and self.data is None:
            raise InputError("--labels needs --data (the labels are an array of the data file)")
        if self.loss not in LOSSES:
            raise InputError(f"--loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        if self.loss != "kl" and (self.labels is not None or self.data is None):
            raise InputError("--loss applies to the ONNX route without --labels")
        if self.batch_size < 1 or (self.batches is not None and self.batches < 1):
            raise InputError("--batch-size and --batches must be >= 1")


def _compute(cfg: SensitivityConfig, model, layers) -> HessianResult:
    if cfg.torch_factory is not None:
        from onnx_hawq.calibration.torch_route import torch_sensitivities

        return torch_sensitivities(cfg.torch_factory, model, layers, cfg.hessian, cfg.batches, cfg.progress)
    from onnx_hawq.calibration.onnx_route import load_labels, onnx_sensitivities

    data = load_data(cfg.data, model)
    labels = None if cfg.labels is None else load_labels(cfg.data, cfg.labels, len(next(iter(data.values()))))
    return onnx_sensitivities(model, data, labels, cfg.hessian, cfg.batch_size, cfg.batches, cfg.progress,
                              cfg.loss)


def sensitivity(cfg: SensitivityConfig) -> Sensitivity:
    """Compute the per-layer sensitivities that `cfg` asks for (nothing written)."""
    from onnx_hawq.transforms.prepare import prepare_model

    model = prepare_model(load_model(cfg.model))
    layers = find_layers(model)
    if not layers:
        raise InputError(f"{cfg.model} has no quantizable layer (Conv/Gemm/MatMul with constant weights)")
    result = _compute(cfg, model, layers)
    log.info("sensitivity: %d Hessian-vector products in %.1f s", result.hvp_count, result.seconds)
    source = f"torch:{cfg.torch_factory}" if cfg.torch_factory else "onnx"
    return Sensitivity(model=fingerprint(layers), method=cfg.hessian.method, layers=result.layers,
                       seed=cfg.hessian.seed, source=source, hvp_count=result.hvp_count)


def run_sensitivity(cfg: SensitivityConfig) -> Sensitivity:
    """Compute, then write the sensitivity file (and the plot) atomically; nothing on failure."""
    check_output_path(cfg.output, cfg.model, cfg.data)
    if cfg.plot:
        check_output_path(cfg.plot, cfg.model, cfg.data, cfg.output)
    sens = sensitivity(cfg)
    png = None
    if cfg.plot:
        from onnx_hawq.calibration.plot import sensitivity_png

        png = sensitivity_png(sens)
    sens.save(cfg.output)
    if png is not None:
        atomic_write_bytes(cfg.plot, png)
    return sens
