"""`onnx-hawq compile`: a quantized ONNX model -> a TVM shared library (extra `tvm`), optionally
checked bit for bit against onnxruntime."""

from __future__ import annotations

import dataclasses
import time

import click

from onnx_hawq.cli.options import is_quiet, model_argument, verbosity
from onnx_hawq.config import JsonConfig


@dataclasses.dataclass(frozen=True)
class CompileConfig(JsonConfig):
    """Everything `onnx-hawq compile` needs."""

    KIND = "onnx-hawq-compile"

    model: str
    output: str
    target: str = "llvm"
    check: str | None = None
    batch: int | None = None
    min_cosine: float = 0.99  # --check on graphs with float ops between integer ops


def run_compile(config: CompileConfig, echo=lambda s: None):
    """Import, build and export the model; run the --check comparison when asked."""
    from onnx_hawq.compile.build import parse_target
    from onnx_hawq.model_io import check_output_path, load_data, load_model

    check_output_path(config.output, config.model, config.check)
    model = load_model(config.model)
    data = load_data(config.check, model, "check data") if config.check else None
    target = parse_target(config.target)
    seconds = build_library(model, config, target)
    echo(f"built {config.output} for {config.target} in {seconds:.1f}s")
    return None if data is None else check_library(config, model, data, target)


def build_library(model, config: CompileConfig, target) -> float:
    """Import and build `model` with TVM, export the library; return the seconds it took."""
    from onnx_hawq.compile import build as tb
    from onnx_hawq.compile.frontend import import_onnx

    start = time.perf_counter()
    tb.export(tb.build(import_onnx(model, _shapes(model, config.batch)), target), config.output)
    return time.perf_counter() - start


def check_library(config: CompileConfig, model, data: dict, target):
    """Run the exported library and onnxruntime on `data` -> `compile.check.CheckResult`."""
    from onnx_hawq.ort import session
    from onnx_hawq.compile import build as tb
    from onnx_hawq.compile.check import compare
    from onnx_hawq.errors import HawqError

    if target.kind.name == "cuda" and not tb.require_tvm().cuda(0).exist:
        raise HawqError("--check needs a CUDA device for a cuda target; none is present")
    if config.batch:
        data = {k: v[: config.batch] for k, v in data.items()}
    vm = tb.load(config.output, target)
    got = tb.run_vm(vm, model, data, tb.device_of(target))
    want = session(model).run([o.name for o in model.graph.output], data)
    return compare(model, got, want, config.min_cosine)


def _shapes(model, batch: int | None) -> dict | None:
    """Input shapes with the first (batch) dimension fixed to `batch`, or None to keep it symbolic."""
    if batch is None:
        return None
    from onnx_hawq.model_io import input_specs

    return {n: [batch, *(d if d is not None else 1 for d in shape[1:])] for n, (shape, _) in input_specs(model).items()}


@click.command("compile")
@model_argument
@click.option("--target", default="llvm", show_default=True, help="llvm, cuda or cuda:sm_XX (e.g. cuda:sm_90).")
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
    from onnx_hawq.errors import HawqError

    config = CompileConfig(model, output, target, check, batch, min_cosine)
    result = run_compile(config, echo=(lambda s: None) if is_quiet() else click.echo)
    if result is not None:
        click.echo(result.line())
        if not result.passed:
            raise HawqError(f"{config.output} differs from onnxruntime on {config.check}")
