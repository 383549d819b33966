"""`onnx-hawq quantize`: float ONNX -> mixed 4/8-bit integer ONNX (+ JSON report)."""

from __future__ import annotations

import click

from onnx_hawq.calibration.ranges import Method
from onnx_hawq.cli.options import bits_options, model_argument, progress, verbosity, weights_options


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
@click.option("--format", "fmt", type=click.Choice(["qlinear", "integer", "qdq"]), default="qlinear",
              show_default=True, help="qlinear: QLinearConv & co (fast in onnxruntime); integer: ConvInteger + "
                                      "integer requant; qdq: QuantizeLinear/DequantizeLinear around float ops "
                                      "(OpenVINO, ORT execution providers).")
@weights_options("the plan's, else gptq")
@click.option("--rounding-stages", type=click.IntRange(1), default=None,
              help="GPTQ rounds the layers in this many sequential stages, each on the inputs of the already "
                   "rounded layers in front (one onnxruntime pass each); 1: all on the float model's inputs "
                   "[default: 4].")
@click.option("--no-pack", is_flag=True, help="Keep 2-4-bit weights in int8 containers instead of packed INT4.")
@verbosity
def command(model, bits, bits_from, calib, output, method, percentile, max_samples, report, fmt, rounding, weight_range,
            rounding_stages, no_pack):
    """Quantize MODEL with per-layer bits from a plan (or uniform --bits) into integer ops."""
    from onnx_hawq.cli.options import is_quiet
    from onnx_hawq.quantization import QuantizeConfig, run_quantize
    from onnx_hawq.report import format_table

    config = QuantizeConfig(model, output, calib, bits_from, bits, method, percentile, max_samples, report, fmt,
                            pack=not no_pack, rounding=rounding, weight_range=weight_range,
                            rounding_stages=rounding_stages)
    result = run_quantize(config, progress=None if is_quiet() else progress)
    if not is_quiet():
        click.echo(format_table(result))
        click.echo(f"wrote {output}")
