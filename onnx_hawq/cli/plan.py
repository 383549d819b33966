"""`onnx-hawq plan`: mixed-precision bits from Hessian sensitivities under size/BOPs/latency limits."""

from __future__ import annotations

import click

from onnx_hawq.cli.options import is_quiet, model_argument, verbosity, weights_options
from onnx_hawq.planning.config import PlanConfig, parse_bits, parse_pin, parse_tie
from onnx_hawq.planning.limits import PERCENT_HELP, parse_limit


def plan_config(model, sensitivity, output, max_size, max_bops, max_latency, latency, bits, act_bits,
                metric, tie, tie_residual, pin, sweep, time_limit, workers, calib=None, rounding=None,
                weight_range=None) -> PlanConfig:
    """Parse the command's option strings into a PlanConfig (bad values are InputErrors)."""
    return PlanConfig(
        model=model, sensitivity=sensitivity, output=output,
        max_size=parse_limit("size", max_size) if max_size else None,
        max_bops=parse_limit("bops", max_bops) if max_bops else None,
        max_latency=parse_limit("latency", max_latency) if max_latency else None,
        latency=latency, bits=parse_bits(bits, "--bits"), act_bits=parse_bits(act_bits, "--act-bits"),
        metric=metric, ties=tuple(parse_tie(t) for t in tie), tie_residual=tie_residual,
        pins=tuple(parse_pin(p) for p in pin), sweep=sweep or 0, time_limit=time_limit, workers=workers,
        calib=calib, rounding=rounding, weight_range=weight_range)


@click.command("plan")
@model_argument
@click.option("--sensitivity", required=True, type=click.Path(dir_okay=False),
              help="Sensitivity file (from `onnx-hawq sensitivity`).")
@click.option("--calib", type=click.Path(dir_okay=False),
              help="Calibration samples (.npz): Ω then uses the GPTQ-rounded weights quantize will write.")
@weights_options("gptq with --calib, else nearest")
@click.option("--max-size", help="Model size limit: bytes, 40KB, 1.5MB, 2MiB, N% or N%W8A8."+PERCENT_HELP)
@click.option("--max-bops", help="Bit-operation limit per sample: 1.2G, 3e9, N% or N%W8A8."+PERCENT_HELP)
@click.option("--max-latency", help="Latency limit (sum of per-layer times): 1.5ms, 800us, N% or N%W8A8."+PERCENT_HELP)
@click.option("--latency", type=click.Path(dir_okay=False), help="Latency table (from `onnx-hawq profile`).")
@click.option("--bits", default="4,8", show_default=True, help="Candidate weight bits, e.g. 2,3,4,8.")
@click.option("--act-bits", default="8", show_default=True, help="Candidate activation bits: 8, 4 or 4,8.")
@click.option("--metric", type=click.Choice(["trace", "eigen"]), default="trace", show_default=True,
              help="Hessian factor of Ω: average trace (HAWQ-V2/V3) or top eigenvalue (HAWQ-V1).")
@click.option("--tie", multiple=True, help="Layers that must share bits: a,b (repeatable).")
@click.option("--tie-residual", is_flag=True, help="Tie the layers that meet at each residual Add.")
@click.option("--pin", multiple=True,
              help="Fix bits: first,last=8 or layer=w4a8 (=N fixes weights only; repeatable).")
@click.option("--sweep", type=click.IntRange(1), default=None,
              help="Solve N size budgets (BOPs if only --max-bops) from the smallest model to W8A8; "
                   "-o is then a folder of plan_NN.json, sweep.json and sweep.png.")
@click.option("--time-limit", type=click.FloatRange(min=0.01), default=30.0, show_default=True,
              help="Seconds CP-SAT may search per solve.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="CP-SAT workers.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="plan.json to write (with --sweep: a folder for plans, sweep.json, sweep.png).")
@verbosity
def command(**options):
    """Choose per-layer bits that minimise Σ Hessian-weighted perturbation under the limits."""
    from onnx_hawq.planning.planner import make_plan
    from onnx_hawq.planning.sweep import run_sweep

    cfg = plan_config(**options)
    result = run_sweep(cfg) if cfg.sweep else make_plan(cfg)
    if not is_quiet():
        click.echo(result.summary())
        click.echo(f"wrote {cfg.output}")
