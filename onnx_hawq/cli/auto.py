"""`onnx-hawq auto`: sensitivity -> plan -> quantize -> validate in one command, into one folder."""

from __future__ import annotations

import click

from onnx_hawq.cli.options import classes_axis_option, weights_options
from onnx_hawq.cli.options import (backends_option, batch_size_option, is_quiet, loss_option, model_argument,
                                   progress, threshold_options, verbosity)


@click.command("auto")
@model_argument
@click.option("--calib", required=True, type=click.Path(dir_okay=False),
              help="Samples for the Hessian and activation calibration (.npz, arrays named after the inputs).")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Held-out samples for validation (.npz).")
@click.option("--labels", metavar="KEY", help="Integer class labels in the --data file: report accuracy.")
@loss_option
@click.option("--max-size", default="50%", show_default=True,
              help="Size budget: N% of the way from the all-lowest-bits model (e.g. all 4-bit) to the all-8-bit "
                   "model (HAWQ-V3's total_4bit + α·(total_8bit − total_4bit)), or a size such as 40KB.")
@click.option("--bits", default="4,8", show_default=True, help="Candidate weight bits, e.g. 2,4,8.")
@click.option("--act-bits", default="8", show_default=True, help="Candidate activation bits: 8, 4 or 4,8.")
@click.option("--pin", multiple=True, help="Fix bits: first,last=8 or layer=w4a8 (repeatable).")
@weights_options("gptq")
@click.option("--tie-residual", is_flag=True, help="Tie the layers that meet at each residual Add.")
@click.option("--method", "route", type=click.Choice(["auto", "hessian", "perturbation"]), default="auto",
              show_default=True, help="Sensitivity: the Hessian trace, the measured ΔL in onnxruntime (forward only), "
                                      "or auto: the Hessian where torch converts the graph, else ΔL with a notice.")
@click.option("--max-iter", type=click.IntRange(2), default=50, show_default=True,
              help="Hutchinson vectors per layer at most (one block Hessian-vector product each).")
@click.option("--tol", type=click.FloatRange(0, min_open=True), default=0.1, show_default=True,
              help="Stop once every layer's trace has standard error / |trace| below this.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Hutchinson vectors.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="torch threads for the Hessian [default: torch's]. 1 is fastest for small models and on a "
                   "busy machine (digits on 2 loaded cores: 7 s with 1 thread, 45 s with 2).")
@batch_size_option
@threshold_options
@backends_option
@classes_axis_option
@click.option("--no-layerwise", is_flag=True, help="Skip the layer-wise report and plot.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for every artefact (created if missing).")
@verbosity
def command(model, calib, data, labels, loss, max_size, bits, act_bits, pin, rounding, weight_range, tie_residual,
            route, max_iter, tol, seed, threads, batch_size, min_sqnr, min_cosine, min_top1_agreement,
            max_accuracy_drop, backends, no_layerwise, output, classes_axis):
    """Quantize MODEL with Hessian-aware mixed precision under --max-size and validate it; exit 1 if the gate fails.

    Writes into -o: sensitivity.json/.png, plan.json, MODEL.quant.onnx, quantize.json, validation.json,
    layers.png and auto.json. The Hessian uses --loss to the model's own outputs on --calib (no labels
    needed), one block Hessian-vector product per layer and vector; --method picks the sensitivity route.
    """
    import dataclasses

    from onnx_hawq.planning.config import parse_bits, parse_pin
    from onnx_hawq.planning.limits import parse_limit
    from onnx_hawq.pipeline import AUTO_HESSIAN, AutoConfig, run_auto, summary_table
    from onnx_hawq.validation.config import CompareOptions, Thresholds, parse_backends, parse_threshold
    from onnx_hawq.validation.report import raise_if_failed

    thresholds = Thresholds(parse_threshold(min_sqnr, "--min-sqnr"), parse_threshold(min_cosine, "--min-cosine"),
                            parse_threshold(min_top1_agreement, "--min-top1-agreement"),
                            parse_threshold(max_accuracy_drop, "--max-accuracy-drop"))
    hessian = dataclasses.replace(AUTO_HESSIAN, max_iter=max_iter, tol=tol, seed=seed,
                                  min_iter=min(AUTO_HESSIAN.min_iter, max_iter))
    cfg = AutoConfig(model=model, calib=calib, data=data, output=output, max_size=parse_limit("size", max_size),
                     labels=labels, loss=loss, bits=parse_bits(bits, "--bits"),
                     act_bits=parse_bits(act_bits, "--act-bits"),
                     pins=tuple(parse_pin(p) for p in pin), tie_residual=tie_residual, hessian=hessian,
                     threads=threads, route=route,
                     options=CompareOptions(batch_size, not no_layerwise, parse_backends(backends), classes_axis),
                     thresholds=thresholds, rounding=rounding, weight_range=weight_range)
    result = run_auto(cfg, progress=None if is_quiet() else progress)
    if not is_quiet():
        click.echo(result.plan_summary + "\n")
        click.echo(result.validation.text(top=5) + "\n")
        click.echo(summary_table(result))
    raise_if_failed(result.validation)
