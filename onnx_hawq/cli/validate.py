"""`onnx-hawq validate`: float vs quantized in onnxruntime, as a CI gate (exit 0 pass, 1 fail, 2 bad input)."""

from __future__ import annotations

import click

from onnx_hawq.cli.options import classes_axis_option
from onnx_hawq.cli.options import (backends_option, batch_size_option, data_option, is_quiet, layerwise_options,
                                   progress, threshold_options, verbosity)


@click.command("validate")
@click.argument("float_model", type=click.Path(dir_okay=False))
@click.argument("quant_model", type=click.Path(dir_okay=False))
@data_option()
@click.option("--labels", metavar="KEY", help="Integer class labels in the --data file: report accuracy.")
@batch_size_option
@threshold_options
@layerwise_options
@backends_option
@classes_axis_option
@click.option("--report", type=click.Path(dir_okay=False), help="JSON report to write.")
@click.option("--top", type=click.IntRange(1), default=None, help="Layer-wise rows to print (default: all).")
@verbosity
def command(float_model, quant_model, data, labels, batch_size, min_sqnr, min_cosine, min_top1_agreement,
            max_accuracy_drop, layerwise, plot, backends, report, top, classes_axis):
    """Compare QUANT_MODEL with FLOAT_MODEL on --data in onnxruntime: a PASSED/FAILED line per check.

    Exit code 0 when every check passes, 1 when one fails, 2 on bad input (missing or invalid files,
    bad option values). With --layerwise, every integer node is mapped back to the float graph's
    tensor (FLOAT_MODEL as prepared for quantization: BN folded) and ranked by its local SQNR.
    """
    from onnx_hawq.validation.config import CompareOptions, Thresholds, parse_backends, parse_threshold
    from onnx_hawq.validation.report import raise_if_failed
    from onnx_hawq.validation.run import ValidateConfig, run_validate

    thresholds = Thresholds(parse_threshold(min_sqnr, "--min-sqnr"), parse_threshold(min_cosine, "--min-cosine"),
                            parse_threshold(min_top1_agreement, "--min-top1-agreement"),
                            parse_threshold(max_accuracy_drop, "--max-accuracy-drop"))
    options = CompareOptions(batch_size, layerwise or plot is not None, parse_backends(backends), classes_axis)
    cfg = ValidateConfig(float_model, quant_model, data, labels, options, thresholds, report, plot)
    result = run_validate(cfg, progress=None if is_quiet() else progress)
    if is_quiet():
        click.echo("\n".join(c.line() for c in result.failed), nl=bool(result.failed))
    else:
        click.echo(result.text(top))
        click.echo("".join(f"wrote {p}\n" for p in (report, plot) if p), nl=False)
    raise_if_failed(result)
