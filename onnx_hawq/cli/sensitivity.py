"""`onnx-hawq sensitivity`: per-layer Hessian trace / top eigenvalue -> sensitivity JSON (+ plot)."""

from __future__ import annotations

import click

from onnx_hawq.calibration.hessian import HessianConfig
from onnx_hawq.calibration.run import SensitivityConfig, run_sensitivity
from onnx_hawq.calibration.sensitivity_file import Sensitivity
from onnx_hawq.cli.options import (data_option, hessian_options, is_quiet, loss_option, model_argument,
                                   output_option, verbosity)


def summary(sens: Sensitivity) -> str:
    """One line per layer: average trace ± stderr (samples) and top eigenvalue."""
    width = max(len(n) for n in sens.layers)
    lines = []
    for name, s in sens.layers.items():
        trace = f"trace {s.trace:11.4e} ± {s.stderr:9.2e} ({s.samples} vectors)" if s.samples else ""
        eigen = f"  eigen {s.eigenvalue:11.4e} ({s.eigen_iters} it)" if s.eigenvalue is not None else ""
        delta = "  ".join(f"ΔL {k} {v:.3e}" for k, v in (s.delta_loss or {}).items())
        lines.append(f"{name:<{width}}  {trace}{eigen}{delta}".rstrip())
    tail = "measured by forward runs in onnxruntime" if sens.method == "perturbation" else \
        f"{sens.hvp_count} Hessian-vector products"
    return "\n".join(lines + [tail])


@click.command("sensitivity")
@model_argument
@click.option("--torch", "torch_factory", metavar="MODULE:FACTORY",
              help="PyTorch route: FACTORY() in MODULE (dotted name or .py path) returns (model, data, loss).")
@data_option(required=False, help_text="ONNX route: input samples (.npz, arrays named after the model inputs).")
@click.option("--labels", metavar="KEY",
              help="Integer class labels in the --data file (default: --loss to own outputs).")
@loss_option
@hessian_options
@output_option("Sensitivity file to write (JSON).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a per-layer bar plot (PNG).")
@verbosity
def command(model, torch_factory, data, labels, loss, method, nproc, device, max_iter, tol, eigen_iter, eigen_tol,
            batches, batch_size, seed, blocks, max_seconds, deflate, output, plot):
    """Estimate each layer's Hessian sensitivity of MODEL (the ONNX file names the layers)."""
    from onnx_hawq.calibration.perturbation import PerturbationConfig

    forward = method == "perturbation"
    hessian = HessianConfig(method="trace" if forward else method, max_iter=max_iter, tol=tol,
                            min_iter=min(10, max_iter), eigen_iter=eigen_iter, eigen_tol=eigen_tol, seed=seed,
                            blocks=blocks, max_seconds=max_seconds, deflate=deflate, nproc=nproc, device=device)
    cfg = SensitivityConfig(model=model, output=output, torch_factory=torch_factory, data=data, labels=labels,
                            loss=loss, batch_size=batch_size, batches=batches, hessian=hessian, plot=plot,
                            progress=not is_quiet(),
                            perturbation=PerturbationConfig(loss=loss, batch_size=batch_size, batches=batches)
                            if forward else None)
    sens = run_sensitivity(cfg)
    if sens is not None and not is_quiet():
        click.echo(summary(sens))
        click.echo(f"wrote {output}" + (f" and {plot}" if plot else ""))
