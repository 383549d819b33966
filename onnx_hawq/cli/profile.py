"""`onnx-hawq profile`: a per-layer latency table measured in onnxruntime on this machine."""

from __future__ import annotations

import click

from onnx_hawq.cli.options import is_quiet, model_argument, output_option, progress, verbosity
from onnx_hawq.planning.config import parse_bits
from onnx_hawq.planning.profiler import ProfileConfig


@click.command("profile")
@model_argument
@click.option("--bits", default="4,8", show_default=True, help="Weight bits to measure, e.g. 2,4,8.")
@click.option("--act-bits", default="8", show_default=True, help="Activation bits to measure: 8, 4 or 4,8.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="onnxruntime threads.")
@click.option("--warmup", type=click.IntRange(0), default=10, show_default=True, help="Untimed runs first.")
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True, help="Timed runs (median kept).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size.")
@output_option("latency.json to write.")
@verbosity
def command(model, bits, act_bits, threads, warmup, runs, batch, output):
    """Time every quantizable layer at every bit choice as an isolated integer node."""
    from onnx_hawq.planning.profiler import run_profile

    cfg = ProfileConfig(model=model, output=output, bits=parse_bits(bits, "--bits"),
                        act_bits=parse_bits(act_bits, "--act-bits"), threads=threads, warmup=warmup,
                        runs=runs, batch=batch)
    table = run_profile(cfg, progress=lambda items: progress(items, total=len(items), desc="profile"))
    if not is_quiet():
        click.echo(f"profiled {len(table.layers)} layers x {len(next(iter(table.layers.values())))} "
                   f"bit choices on {table.device} ({table.threads} thread(s)); wrote {output}")
