"""`onnx-hawq sensitivity` as one library call: config in, sensitivity file (and plot) out.

Importing this module does not import torch; the routes do, when run.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx

from onnx_hawq.calibration.hessian import HessianConfig, HessianResult
from onnx_hawq.calibration.perturbation import PerturbationConfig
from onnx_hawq.calibration.sensitivity_file import Sensitivity
from onnx_hawq.config import JsonConfig, atomic_write_bytes
from onnx_hawq.errors import InputError
from onnx_hawq.layers import find_layers
from onnx_hawq.model_io import check_output_path, load_data, load_model
from onnx_hawq.plans import fingerprint

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
    perturbation: PerturbationConfig | None = None  # forward-only ΔL in onnxruntime instead of the Hessian

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
        if self.perturbation is not None and (self.data is None or self.labels is not None):
            raise InputError("--method perturbation needs --data and measures the loss to the model's own outputs "
                             "(no --labels, no --torch)")


def _compute(cfg: SensitivityConfig, model, layers, data, labels) -> HessianResult:
    """The Hessian statistics, on `cfg.hessian.nproc` data-parallel ranks (rank 0 gets them)."""
    from onnx_hawq.calibration.distributed import launch

    return launch(_compute_rank, (cfg, model, layers, data, labels), nproc=cfg.hessian.nproc,
                  device=cfg.hessian.device)


def _compute_rank(cfg: SensitivityConfig, model, layers, data, labels) -> HessianResult:
    if cfg.torch_factory is not None:
        from onnx_hawq.calibration.torch_route import torch_sensitivities

        return torch_sensitivities(cfg.torch_factory, model, layers, cfg.hessian, cfg.batches, cfg.progress)
    from onnx_hawq.calibration.onnx_route import onnx_sensitivities

    return onnx_sensitivities(model, data, labels, cfg.hessian, cfg.batch_size, cfg.batches, cfg.progress,
                              cfg.loss)


def sensitivity_of(model: onnx.ModelProto, cfg: SensitivityConfig, data: dict | None = None,
                   labels: np.ndarray | None = None) -> Sensitivity | None:
    """Per-layer sensitivities of a prepared `model` on `data` (arrays by input name; not needed
    for the torch route), with optional class `labels`."""
    layers = find_layers(model)
    if not layers:
        raise InputError(f"{cfg.model} has no quantizable layer (Conv/Gemm/MatMul with constant weights)")
    if cfg.perturbation is not None:
        from onnx_hawq.calibration.perturbation import perturbation_sensitivity

        return perturbation_sensitivity(model, layers, data, cfg.perturbation, cfg.progress)
    result = _compute(cfg, model, layers, data, labels)
    if result is None:  # a non-zero torchrun rank: rank 0 writes the file
        return None
    log.info("sensitivity: %d Hessian-vector products in %.1f s", result.hvp_count, result.seconds)
    source = f"torch:{cfg.torch_factory}" if cfg.torch_factory else "onnx"
    return Sensitivity(model=fingerprint(layers), method=cfg.hessian.method, layers=result.layers,
                       seed=cfg.hessian.seed, source=source, hvp_count=result.hvp_count)


def sensitivity(cfg: SensitivityConfig) -> Sensitivity:
    """Load and prepare `cfg.model`, read its data, compute the sensitivities (nothing written)."""
    from onnx_hawq.calibration.onnx_route import load_labels
    from onnx_hawq.transforms.prepare import prepare_model

    raw = load_model(cfg.model)
    data = labels = None
    if cfg.data is not None:
        data = load_data(cfg.data, raw)
        if cfg.labels is not None:
            labels = load_labels(cfg.data, cfg.labels, len(next(iter(data.values()))))
    return sensitivity_of(prepare_model(raw), cfg, data, labels)


def write_sensitivity(sens: Sensitivity, cfg: SensitivityConfig) -> None:
    """Write the sensitivity file (and its plot) atomically."""
    png = None
    if cfg.plot:
        from onnx_hawq.calibration.plot import sensitivity_png

        png = sensitivity_png(sens)
    sens.save(cfg.output)
    if png is not None:
        atomic_write_bytes(cfg.plot, png)


def check_outputs(cfg: SensitivityConfig) -> None:
    """Refuse output paths that name an input or each other."""
    check_output_path(cfg.output, cfg.model, cfg.data)
    if cfg.plot:
        check_output_path(cfg.plot, cfg.model, cfg.data, others=[cfg.output])


def run_sensitivity(cfg: SensitivityConfig) -> Sensitivity:
    """Compute, then write the sensitivity file (and the plot) atomically; nothing on failure."""
    check_outputs(cfg)
    sens = sensitivity(cfg)
    if sens is not None:  # None on the non-zero ranks of a torchrun job
        write_sensitivity(sens, cfg)
    return sens
