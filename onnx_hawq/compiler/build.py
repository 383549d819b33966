"""Build, export, load and run TVM Relax modules of quantized ONNX models (imports tvm lazily).

Targets are given as `llvm[:ISA]`, `cuda` or `cuda:sm_90` and become TVM 0.27 JSON-dict targets.
`llvm` takes the host's -mcpu when the host has an int8 ISA (AMX-INT8, else AVX512-VNNI, else AVX2),
`llvm:amx` / `llvm:vnni` / `llvm:avx2` name one (to cross-compile), `llvm:plain` keeps TVM's generic
lowering. With an ISA, the CPU pipeline routes int8 conv2d / matmul calls to the tensorized (or AMX tile)
kernels (dispatch.py) and
gives the remaining fused loops a parallel schedule (cpu_schedule.py). CUDA builds use TVM's
default GPU pipeline with tensorization switched off (the stock dlight tensor-core rules crashed
inside `Tensorize` with apache-tvm-ffi 0.1.15; see cuda_mma.py for the tensor-core matmul).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import onnx

from onnx_hawq.config import atomic_write_bytes
from onnx_hawq.errors import HawqError, InputError
from onnx_hawq.ort import first_line

TARGET_RE = re.compile(r"^(llvm|cuda)(?::(sm_\d+|amx|vnni|avx2|plain))?$")


def require_tvm():
    """The tvm module, or an InputError saying how to install it."""
    try:
        import tvm
    except ImportError:
        raise InputError("TVM is not installed; install the tvm extra: pip install 'onnx-hawq[tvm]'") from None
    return tvm


def parse_target(spec: str):
    """`llvm[:amx|vnni|avx2|plain]`, `cuda` or `cuda:sm_XX` -> a tvm.target.Target (JSON-dict form)."""
    m = TARGET_RE.match(spec.strip())
    arch = m and m.group(2) is not None and m.group(2).startswith("sm_")
    if not m or (m.group(1) == "llvm" and arch) or (m.group(1) == "cuda" and m.group(2) and not arch):
        raise InputError(f"--target {spec!r} is not one of: llvm, llvm:amx, llvm:vnni, llvm:avx2, llvm:plain, cuda, "
                         "cuda:sm_XX (e.g. cuda:sm_90)")
    tvm = require_tvm()
    if m.group(1) == "llvm":
        from onnx_hawq.compiler.vnni import ISAS, host_isa, isa_target

        isa = host_isa() if m.group(2) is None else ISAS.get(m.group(2))
        return isa_target(isa, os.cpu_count() or 1) if isa else tvm.target.Target({"kind": "llvm"})
    kind = {"kind": "cuda", **({"arch": m.group(2)} if m.group(2) else {})}
    return tvm.target.Target(kind, host={"kind": "llvm"})


def device_of(target):
    tvm = require_tvm()
    return tvm.cuda(0) if target.kind.name == "cuda" else tvm.cpu(0)


def cuda_pipeline(target):
    """TVM's CUDA relax pipeline with every PrimFunc marked `dlight.do_not_tensorize`."""
    tvm = require_tvm()
    from tvm.relax.backend.cuda import pipeline as cp

    @tvm.tirx.transform.prim_func_pass(opt_level=0, name="HawqNoTensorize")
    def no_tensorize(func, _mod, _ctx):
        return func.with_attr("dlight.do_not_tensorize", True)

    legalize = cp.legalize_passes(target)
    passes = (cp.library_dispatch_passes(target) + legalize[:-1] + [no_tensorize, legalize[-1]]
              + cp.dataflow_lower_passes(target) + cp.finalize_passes(target))

    @tvm.transform.module_pass(opt_level=0, name="HawqCudaPipeline")
    def pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return pipeline


def cpu_isa(target):
    """The int8 ISA an llvm target's -mcpu/-mattr has (AMX, then VNNI, then AVX2), or None (plain lowering)."""
    from tvm.target.codegen import llvm_cpu_has_features

    from onnx_hawq.compiler.vnni import AMX, AVX2, VNNI

    if target.kind.name != "llvm" or target.attrs.get("mcpu") is None:
        return None
    return next((i for i in (AMX, VNNI, AVX2) if llvm_cpu_has_features([i.feature], target)), None)


def cpu_pipeline(target, isa):
    """TVM's CPU relax pipeline with the int8 dispatch before legalization and a loop schedule after fusion."""
    tvm = require_tvm()
    from tvm.relax.backend.cpu_generic import pipeline as cp

    from onnx_hawq.compiler.cpu_schedule import schedule_loops
    from onnx_hawq.compiler.dispatch import int8_dispatch

    passes = (cp.library_dispatch_passes(target) + [int8_dispatch(isa)] + cp.legalize_passes(target)
              + [schedule_loops()] + cp.dataflow_lower_passes(target) + cp.finalize_passes(target))

    @tvm.transform.module_pass(opt_level=0, name="HawqCpuPipeline")
    def pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return pipeline


def build(mod, target):
    """tvm.compile the Relax module for `target`; build failures are one-line HawqErrors."""
    tvm = require_tvm()
    isa = cpu_isa(target)
    pipeline = cuda_pipeline(target) if target.kind.name == "cuda" else cpu_pipeline(target, isa) if isa \
        else "default"
    try:
        return tvm.compile(mod, target, relax_pipeline=pipeline)
    except Exception as e:  # TVMError and friends
        raise HawqError(f"TVM build for {target.kind.name} failed: {first_line(e)}") from None


def export(executable, path: str | os.PathLike) -> None:
    """Write the executable as a shared library at `path` (atomically)."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / (path.stem + ".so")
        executable.export_library(str(lib))
        atomic_write_bytes(path, lib.read_bytes())


def load(path: str | os.PathLike, target):
    """A relax.VirtualMachine over an exported library, on the target's device."""
    tvm = require_tvm()
    return tvm.relax.VirtualMachine(tvm.runtime.load_module(str(path)), device_of(target))


def run_vm(vm, model: onnx.ModelProto, feeds: dict[str, np.ndarray], device) -> list[np.ndarray]:
    """Run `main` on feeds given by model input name; outputs as numpy arrays."""
    tvm = require_tvm()
    from onnx_hawq.model_io import input_specs

    args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[name]), device) for name in input_specs(model)]
    out = vm["main"](*args)
    items = [out] if hasattr(out, "numpy") else list(out)
    return [_to_numpy(o) for o in items]


def _to_numpy(value) -> np.ndarray:
    """A VM result -> numpy; shape computations come back as shape tuples or plain ints."""
    if hasattr(value, "numpy"):
        return value.numpy()
    if isinstance(value, (int, np.integer)):
        return np.array(value, np.int64)
    return np.array([int(v) for v in value], np.int64)


def run_tvm(model: onnx.ModelProto, feeds: dict[str, np.ndarray], target: str = "llvm") -> list[np.ndarray]:
    """Import, build and run `model` on `feeds` with TVM; the graph outputs in order."""
    from onnx_hawq.compiler.frontend import import_onnx

    tgt = parse_target(target)
    tvm = require_tvm()
    vm = tvm.relax.VirtualMachine(build(import_onnx(model), tgt), device_of(tgt))
    return run_vm(vm, model, feeds, device_of(tgt))


def tvm_backend(model: onnx.ModelProto, names: list[str], target: str = "llvm"):
    """A validate-backend factory: builds once, returns run(feeds) -> arrays named `names`."""
    from onnx_hawq.ort import expose
    from onnx_hawq.compiler.frontend import import_onnx

    exposed = expose(model, names)
    outputs = [o.name for o in exposed.graph.output]
    tgt = parse_target(target)
    vm = require_tvm().relax.VirtualMachine(build(import_onnx(exposed), tgt), device_of(tgt))

    def run(feeds):
        got = dict(zip(outputs, run_vm(vm, exposed, feeds, device_of(tgt))))
        return [got[n] for n in names]

    return run
