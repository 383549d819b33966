"""`onnx-hawq quantize`: float ONNX -> mixed 4/8-bit integer ONNX (+ JSON report)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from onnx_hawq.calibration.ranges import Method
from onnx_hawq.cli.options import bits_options, model_argument, progress, verbosity
from onnx_hawq.config import JsonConfig


@dataclasses.dataclass(frozen=True)
class QuantizeConfig(JsonConfig):
    """Everything `onnx-hawq quantize` needs."""

    model: str
    output: str
    calib: str
    plan: str | None = None
    bits: str | None = None
    method: str = "minmax"
    percentile: float = 99.99
    max_samples: int = 512
    report: str | None = None
    format: str = "qlinear"


def run_quantize(config: QuantizeConfig, show_progress: bool = True) -> dict:
    """Load, quantize, check and atomically save; return the report (also written as JSON)."""
    import onnx

    from onnx_hawq.calibration.ranges import CalibConfig
    from onnx_hawq.config import atomic_write_json
    from onnx_hawq.errors import InputError
    from onnx_hawq.model_io import check_output_path, load_data, load_model, save_model
    from onnx_hawq.plan import Plan, uniform_plan
    from onnx_hawq.quantize import quantize_model
    from onnx_hawq.report import build_report

    if (config.plan is None) == (config.bits is None):
        raise InputError("give exactly one of --bits-from plan.json or --bits SPEC")
    check_output_path(config.output, config.model)
    report_path = config.report or str(Path(config.output).with_suffix(".report.json"))
    check_output_path(report_path, config.model)
    plan = Plan.load(config.plan, "plan") if config.plan else uniform_plan(config.bits)
    model = load_model(config.model)
    data = load_data(config.calib, model, "calibration")
    calib = CalibConfig(Method(config.method), config.percentile, max_samples=config.max_samples)
    result = quantize_model(model, plan, data, calib, progress if show_progress else None)
    out = _convert_format(result.model, config.format)
    onnx.checker.check_model(out)
    report = build_report(out)
    report.update(model=config.model, output=config.output, plan=plan.to_dict(), refused=result.refused,
                  format=config.format)
    save_model(out, config.output)
    atomic_write_json(report_path, report)
    return report


def _convert_format(model, fmt: str):
    if fmt == "qlinear":
        return model
    from onnx_hawq.transforms.to_integer_form import to_integer_form

    return to_integer_form(model)


@click.command("quantize")
@model_argument
@bits_options
@click.option("--calib", required=True, type=click.Path(dir_okay=False),
              help="Calibration samples (.npz, arrays named after the model inputs).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Quantized model path.")
@click.option("--method", type=click.Choice([m.value for m in Method]), default="minmax", show_default=True,
              help="Activation range calibration.")
@click.option("--percentile", type=click.FloatRange(50, 100), default=99.99, show_default=True)
@click.option("--max-samples", type=click.IntRange(1), default=512, show_default=True,
              help="Calibration samples used at most.")
@click.option("--report", type=click.Path(dir_okay=False), help="Report path [default: OUTPUT.report.json].")
@click.option("--format", "fmt", type=click.Choice(["qlinear", "integer"]), default="qlinear", show_default=True,
              help="qlinear: QLinearConv & co (fast in onnxruntime); integer: ConvInteger + integer requant.")
@verbosity
def command(model, bits, bits_from, calib, output, method, percentile, max_samples, report, fmt):
    """Quantize MODEL with per-layer bits from a plan (or uniform --bits) into integer ops."""
    from onnx_hawq.cli.options import is_quiet
    from onnx_hawq.report import format_table

    config = QuantizeConfig(model, output, calib, bits_from, bits, method, percentile, max_samples, report, fmt)
    result = run_quantize(config, show_progress=not is_quiet())
    if not is_quiet():
        click.echo(format_table(result))
        click.echo(f"wrote {output}")
