"""`onnx-hawq validate` as one library call: config in, Report out (JSON report and plot written).

The gate verdict is left to the caller (`report.raise_if_failed`), so the report can be printed
first and the CLI then exits with code 1.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from onnx_hawq.config import JsonConfig, atomic_write_bytes, atomic_write_json
from onnx_hawq.errors import InputError
from onnx_hawq.model_io import check_output_path, load_data
from onnx_hawq.model_io import load_model_any
from onnx_hawq.validation.comparator import Comparator
from onnx_hawq.validation.config import CompareOptions, Thresholds
from onnx_hawq.validation.report import Report, evaluate


@dataclasses.dataclass(frozen=True)
class ValidateConfig(JsonConfig):
    """Everything `onnx-hawq validate` needs."""

    float_model: str
    quant_model: str
    data: str
    labels: Optional[str] = None  # key of integer class labels in `data`
    options: CompareOptions = CompareOptions()
    thresholds: Thresholds = Thresholds()
    report: Optional[str] = None  # JSON report to write
    plot: Optional[str] = None  # layer-wise PNG to write (needs options.layerwise)

    def __post_init__(self):
        if self.plot is not None and not self.options.layerwise:
            raise InputError("--plot draws the layer-wise report; add --layerwise")


def check_outputs(cfg: ValidateConfig) -> None:
    """Refuse a report or plot path that is one of the inputs, or the same path twice."""
    inputs = (cfg.float_model, cfg.quant_model, cfg.data)
    for path in (cfg.report, cfg.plot):
        if path is not None:
            check_output_path(path, *inputs)
    if cfg.report is not None and cfg.report == cfg.plot:
        raise InputError("--report and --plot name the same file")


def load_labels_for(cfg: ValidateConfig, count: int) -> np.ndarray | None:
    if cfg.labels is None:
        return None
    from onnx_hawq.calibration.onnx_route import load_labels

    return load_labels(cfg.data, cfg.labels, count)


def check_inputs(float_model, quant_model, data: dict) -> None:
    """The quantized model must read the same inputs the float model does."""
    from onnx_hawq.model_io import input_specs

    missing = [n for n in input_specs(quant_model) if n not in data]
    if missing:
        raise InputError(f"the quantized model reads input(s) {', '.join(missing)} that the float model "
                         f"does not have; are these two versions of one model?")


def run_validate(cfg: ValidateConfig, progress: Callable | None = None) -> Report:
    """Compare the models on the data, evaluate the thresholds, write the JSON report and plot."""
    check_outputs(cfg)
    float_model, quant_model = load_model_any(cfg.float_model), load_model_any(cfg.quant_model)
    data = load_data(cfg.data, float_model)
    labels = load_labels_for(cfg, len(next(iter(data.values()))))
    return validate_models(cfg, float_model, quant_model, data, labels, progress)


def validate_models(cfg: ValidateConfig, float_model, quant_model, data: dict, labels: np.ndarray | None,
                    progress: Callable | None = None, prepared_float=None) -> Report:
    """Compare models already in memory on `data`; evaluate and write the report as `cfg` says."""
    check_inputs(float_model, quant_model, data)
    comparison = Comparator(float_model, quant_model, cfg.options, prepared_float).run(data, labels, progress)
    inputs = {"float_model": cfg.float_model, "quant_model": cfg.quant_model, "data": cfg.data,
              "labels": cfg.labels, "options": cfg.options.to_dict(), "thresholds": cfg.thresholds.to_dict()}
    report = Report(comparison, evaluate(comparison, cfg.thresholds), inputs)
    write_outputs(cfg, report)
    return report


def write_outputs(cfg: ValidateConfig, report: Report) -> None:
    """The JSON report and the layer-wise plot, each atomically."""
    if cfg.plot is not None:
        from onnx_hawq.validation.plot import layers_png

        atomic_write_bytes(cfg.plot, layers_png(list(report.comparison.layers)))
    if cfg.report is not None:
        atomic_write_json(cfg.report, report.to_dict())
