"""`onnx-hawq compile` as one library call: a quantized ONNX file -> a TVM shared library,
optionally checked against onnxruntime on samples."""

from __future__ import annotations

import dataclasses
import time

from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import HawqError, InputError
from onnx_hawq.model_io import fixed_batch
from onnx_hawq.model_io import padded_batches
from onnx_hawq.model_io import unpad


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
    check_batch_size: int = 64  # samples per run of --check on a model with a symbolic batch


def run_compile(config: CompileConfig, echo=lambda s: None):
    """Import, build and export the model; run the --check comparison when asked."""
    from onnx_hawq.compiler.build import parse_target
    from onnx_hawq.model_io import check_model_output_path, load_data
    from onnx_hawq.model_io import load_model_any

    check_model_output_path(config.output, [config.model], [config.check])
    model = load_model_any(config.model)
    data = load_data(config.check, model, "check data") if config.check else None
    target = parse_target(config.target)
    if data is not None:
        check_runs_here(config.target, target)
    seconds = build_library(model, config, target)
    echo(f"built {config.output} for {config.target} in {seconds:.1f}s")
    if data is None:
        return None
    try:
        return check_library(config, model, data, target)
    except HawqError as e:  # the library is the product: it stays, and the message says so
        raise type(e)(f"{e} (the check did not finish; {config.output} was built and is kept)") from None


def check_runs_here(spec: str, target) -> None:
    """InputError (before any build) when --check would run code of an ISA this CPU lacks (it would die of SIGILL)."""
    from onnx_hawq.compiler.build import cpu_isa
    from onnx_hawq.compiler.vnni import host_has

    isa = cpu_isa(target)
    if isa is not None and not host_has(isa.flag):
        raise InputError(f"--check runs the library on this CPU, but --target {spec} uses {isa.flag}, which it "
                         f"lacks: build without --check, or check with --target llvm")


def build_library(model, config: CompileConfig, target) -> float:
    """Import and build `model` with TVM, export the library; return the seconds it took."""
    from onnx_hawq.compiler import build as tb
    from onnx_hawq.compiler.frontend import import_onnx

    start = time.perf_counter()
    tb.export(tb.build(import_onnx(model, _shapes(model, config.batch)), target), config.output)
    return time.perf_counter() - start


def check_library(config: CompileConfig, model, data: dict, target):
    """Run the exported library and onnxruntime on `data`, batch by batch (memory bounded by one
    batch) -> `compile.check.CheckResult`. `--batch B` checks the first B samples (the library's
    batch); a model with a fixed batch runs in it, its short last batch padded and the padding dropped."""
    from onnx_hawq.ort import first_line, session
    from onnx_hawq.compiler import build as tb
    from onnx_hawq.compiler.check import compare, merge

    if target.kind.name == "cuda" and not tb.require_tvm().cuda(0).exist:
        raise HawqError("--check needs a CUDA device for a cuda target; none is present")
    if config.batch:
        data = {k: v[: config.batch] for k, v in data.items()}
    fixed = config.batch or fixed_batch(model)
    size = fixed or config.check_batch_size
    vm, names = tb.load(config.output, target), [o.name for o in model.graph.output]
    try:
        sess = session(model)
    except Exception as e:  # onnxruntime raises its own exception types
        raise HawqError(f"onnxruntime cannot load the model: {first_line(e)}") from None
    result = None
    for feeds, count in padded_batches(data, size, fixed is not None):
        try:
            out = tb.run_vm(vm, model, feeds, tb.device_of(target))
        except Exception as e:  # TVMError and friends
            raise HawqError(f"the TVM library failed on the check data: {type(e).__name__}: {first_line(e)}") from None
        got = [unpad(v, count, size) for v in out]
        want = [unpad(v, count, size) for v in sess.run(names, feeds)]
        result = merge(result, compare(model, got, want, config.min_cosine))
    return result


def _shapes(model, batch: int | None) -> dict | None:
    """Input shapes with the first (batch) dimension fixed to `batch`, or None to keep it symbolic."""
    if batch is None:
        return None
    from onnx_hawq.model_io import input_specs

    return {n: [batch, *(d if d is not None else 1 for d in shape[1:])] for n, (shape, _) in input_specs(model).items()}
