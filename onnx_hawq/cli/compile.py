"""`onnx-hawq compile`: a quantized ONNX model -> a TVM shared library (extra `tvm`), optionally
checked bit for bit against onnxruntime."""

from __future__ import annotations

import click

from onnx_hawq.cli.options import is_quiet, model_argument, verbosity


@click.command("compile")
@model_argument
@click.option("--target", default="llvm", show_default=True,
              help="llvm (the host's int8 ISA), llvm:amx|vnni|avx2|plain, cuda or cuda:sm_XX (e.g. cuda:sm_90).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Shared library to write (.so).")
@click.option("--check", type=click.Path(dir_okay=False),
              help="Samples (.npz): run the library and onnxruntime on them and compare bit for bit (graphs with "
                   "float ops between integer ops, e.g. LayerNormalization: by --min-cosine).")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=0.99, show_default=True,
              help="Smallest per-sample cosine to onnxruntime when bit-exactness is impossible.")
@click.option("--batch", type=click.IntRange(1), default=None,
              help="Fix the batch dimension (default: symbolic); --check then uses the first BATCH samples.")
@verbosity
def command(model, target, output, check, batch, min_cosine):
    """Compile a quantized MODEL with TVM into a loadable library (relax.VirtualMachine).

    Exit code 0 when built (and --check passed), 1 when the check finds differences, 2 on bad input
    (missing files, an unknown target, an op TVM cannot import).
    """
    from onnx_hawq.compiler.run import CompileConfig, run_compile
    from onnx_hawq.errors import HawqError

    config = CompileConfig(model, output, target, check, batch, min_cosine)
    result = run_compile(config, echo=(lambda s: None) if is_quiet() else click.echo)
    if result is not None:
        click.echo(result.line())
        if not result.passed:
            raise HawqError(f"{config.output} differs from onnxruntime on {config.check}")
