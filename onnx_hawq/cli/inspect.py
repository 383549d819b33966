"""`onnx-hawq inspect`: print the per-layer table of a model onnx-hawq produced."""

from __future__ import annotations

import click

from onnx_hawq.cli.options import model_argument, verbosity


@click.command("inspect")
@model_argument
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbosity
def command(model, as_json):
    """Show bits, kernel form, exactness and size of each quantized layer of MODEL."""
    import json

    from onnx_hawq.model_io import load_model
    from onnx_hawq.report import build_report, format_table

    report = build_report(load_model(model))
    click.echo(json.dumps(report, indent=2) if as_json else format_table(report))
