"""TVM on the GPU (device only): int8 GEMM, a quantized ResNet-18-shaped model, int4 vs int8.

    python benchmarks/tvm_gpu.py [--target cuda:sm_90] [--parts gemm,mma,resnet] [--gemm 4096] [--batch 32]

1. gemm:   int8 x int8 -> int32 matmul (n^3) built by onnx-hawq's CUDA pipeline vs torch._int_mm
           (results checked equal), plus the QLinearMatMul converter path (u8 x s8 + exact requant).
   mma:    the same GEMM with onnx-hawq's explicit `mma.sync` s8 tensor-core kernel
           (compiler/cuda_mma.py) vs torch._int_mm, results checked equal.
2. resnet: the ResNet-18-shaped model of benchmarks/models.py, quantized W8A8 / W4A8 / W4A4 and
           compiled with TVM, vs PyTorch eager fp32 and TVM fp32; every quantized build is checked
           bit for bit against onnxruntime (CPU) on two samples. 4-bit weights live in int8
           containers, so W4A8 vs W8A8 shows what the int8 kernels give 4-bit layers.
Prints a table and writes benchmarks/results/tvm_gpu.json. Exits with a message when no CUDA
device is present.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from onnx_hawq.config import atomic_write_json  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "tvm_gpu.json"


def require_cuda():
    """(tvm, torch) when both see a CUDA device; otherwise exit with a one-line message."""
    try:
        import torch
        import tvm
    except ImportError as e:
        sys.exit(f"tvm_gpu.py needs tvm and torch: {e}")
    if not tvm.cuda(0).exist or not torch.cuda.is_available():
        sys.exit("tvm_gpu.py needs a CUDA device, and none is present (TVM: "
                 f"{tvm.cuda(0).exist}, torch: {torch.cuda.is_available()}); run it on the GPU machine")
    return tvm, torch


def time_tvm(vm, args, dev, number: int = 10, repeat: int = 5) -> float:
    """Median milliseconds of vm.main(*args)."""
    timer = vm.time_evaluator("main", dev, number=number, repeat=repeat)
    return float(np.median(timer(*args).results)) * 1e3


def time_torch(torch, fn, number: int = 10, repeat: int = 5) -> float:
    """Median milliseconds of fn() measured with CUDA events."""
    fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / number)
    return float(np.median(times))


def build_vm(tvm, mod, target):
    from onnx_hawq.compiler.build import build

    start = time.perf_counter()
    ex = build(mod, target)
    return tvm.relax.VirtualMachine(ex, tvm.cuda(0)), time.perf_counter() - start


def int8_matmul_module(tvm, n: int):
    from tvm import relax

    bb = relax.BlockBuilder()
    a, b = (relax.Var(v, relax.TensorType((n, n), "int8")) for v in "ab")
    with bb.function("main", [a, b]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.matmul(a, b, out_dtype="int32")))
        bb.emit_func_output(out)
    return bb.get()


def gemm(tvm, torch, target, n: int) -> dict:
    """TVM int8 GEMM (and the QLinearMatMul route) vs torch._int_mm, in TOPS."""
    r = np.random.default_rng(0)
    a, b = (r.integers(-128, 128, (n, n)).astype(np.int8) for _ in range(2))
    dev = tvm.cuda(0)
    vm, build_s = build_vm(tvm, int8_matmul_module(tvm, n), target)
    args = [tvm.runtime.tensor(x, dev) for x in (a, b)]
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    equal = bool(np.array_equal(vm["main"](*args).numpy(), torch._int_mm(ta, tb).cpu().numpy()))
    ms_tvm, ms_torch = time_tvm(vm, args, dev), time_torch(torch, lambda: torch._int_mm(ta, tb))
    ops = 2.0 * n**3
    row = {"n": n, "build_s": round(build_s, 1), "equal": equal, "tvm_ms": ms_tvm, "torch_int_mm_ms": ms_torch,
           "tvm_tops": ops / ms_tvm / 1e9, "torch_tops": ops / ms_torch / 1e9, "speedup_vs_torch": ms_torch / ms_tvm}
    row["qlinearmatmul_ms"] = qlinear_matmul_ms(tvm, target, a, n)
    return row


def mma(tvm, torch, arch: str, n: int) -> dict:
    """The explicit mma.sync int8 kernel (C = A @ B^T) vs torch._int_mm, in TOPS."""
    from onnx_hawq.compiler.cuda_mma import build_mma_matmul

    r = np.random.default_rng(0)
    a, b = (r.integers(-128, 128, (n, n)).astype(np.int8) for _ in range(2))
    dev = tvm.cuda(0)
    start = time.perf_counter()
    lib = build_mma_matmul(n, n, n, arch)
    fn, build_s = lib["main"], time.perf_counter() - start
    args = [tvm.runtime.tensor(x, dev) for x in (a, b)] + [tvm.runtime.tensor(np.zeros((n, n), np.int32), dev)]
    fn(*args)
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    equal = bool(np.array_equal(args[2].numpy(), torch._int_mm(ta, tb.T.contiguous()).cpu().numpy()))
    ms = float(np.median(lib.mod.time_evaluator("main", dev, number=10, repeat=5)(*args).results)) * 1e3
    ms_torch = time_torch(torch, lambda: torch._int_mm(ta, tb))
    ops = 2.0 * n**3
    return {"n": n, "build_s": round(build_s, 1), "equal": equal, "mma_ms": ms, "torch_int_mm_ms": ms_torch,
            "mma_tops": ops / ms / 1e9, "torch_tops": ops / ms_torch / 1e9}


def qlinear_matmul_ms(tvm, target, w: np.ndarray, n: int) -> float:
    """The onnx-hawq converter path: QLinearMatMul u8 x s8 with dyadic integer requantization."""
    vm, _ = build_vm(tvm, qlinear_matmul_module(n, w), target)
    x = np.random.default_rng(1).integers(0, 256, (n, n)).astype(np.uint8)
    return time_tvm(vm, [tvm.runtime.tensor(x, tvm.cuda(0))], tvm.cuda(0))


def qlinear_matmul_module(n: int, w: np.ndarray | None = None):
    """The Relax module of an n x n QLinearMatMul by `w` (random int8 when None)."""
    from onnx import TensorProto, helper, numpy_helper

    from onnx_hawq.compiler.frontend import import_onnx

    if w is None:
        w = np.random.default_rng(0).integers(-128, 128, (n, n)).astype(np.int8)

    # |w| <= 8 keeps |acc| * b < 2^24 for n = 4096, so the exact integer requantization is used
    inits = {"xs": np.float32(2.0**-4), "xz": np.uint8(0), "w": np.clip(w, -8, 8),
             "ws": np.full(n, 2.0**-16, np.float32), "wz": np.zeros(n, np.int8), "ys": np.float32(1.0),
             "yz": np.uint8(0)}
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    graph = helper.make_graph([node], "mm", [helper.make_tensor_value_info("x", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [n, n])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return import_onnx(model)


def resnet(tvm, torch, target, batch: int, plans: list[str]) -> dict:
    """Quantized ResNet-18-shaped models in TVM vs PyTorch eager fp32 and TVM fp32 (ms per batch)."""
    from benchmarks.models import resnet as resnet_model
    from onnx_hawq.calibration.onnx_to_torch import to_torch
    from onnx_hawq.compiler.frontend import import_onnx

    model = resnet_model()
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    net, tx = to_torch(model).cuda(), torch.from_numpy(x).cuda()
    with torch.no_grad():
        row = {"batch": batch, "torch_fp32_ms": time_torch(torch, lambda: net(tx), number=5)}
    dev = tvm.cuda(0)
    vm, build_s = build_vm(tvm, import_onnx(model, {"input": list(x.shape)}), target)
    row["tvm_fp32_ms"], row["tvm_fp32_build_s"] = time_tvm(vm, [tvm.runtime.tensor(x, dev)], dev, 5, 3), build_s
    for spec in plans:
        row[spec] = quantized_row(tvm, target, model, x, spec)
        row[spec]["speedup_vs_torch_fp32"] = row["torch_fp32_ms"] / row[spec]["ms"]
    return row


def quantized_row(tvm, target, model, x: np.ndarray, spec: str) -> dict:
    """Quantize with a uniform plan, build, time, and count mismatches vs onnxruntime on 2 samples."""
    from onnx_hawq.ort import session
    from onnx_hawq.compiler.build import run_vm
    from onnx_hawq.compiler.frontend import import_onnx
    from onnx_hawq.plans import uniform_plan
    from onnx_hawq.quantization import quantize_model

    q = quantize_model(model, uniform_plan(spec), {"input": x[:8]}).model
    dev = tvm.cuda(0)
    vm, build_s = build_vm(tvm, import_onnx(q, {"input": list(x.shape)}), target)
    ms = time_tvm(vm, [tvm.runtime.tensor(x, dev)], dev, 5, 3)
    got = run_vm(vm, q, {"input": x}, dev)[0][:2]
    want = session(q).run(None, {"input": x[:2]})[0]
    return {"ms": ms, "build_s": round(build_s, 1), "mismatches_vs_ort": int(np.sum(got != want))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cuda:sm_90")
    p.add_argument("--parts", default="gemm,mma,resnet", help="comma list of gemm, mma, resnet")
    p.add_argument("--gemm", type=int, default=4096, help="GEMM size n (n x n x n)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--plans", default="8,w4a8,w4a4", help="uniform plans for the ResNet (int4 vs int8)")
    p.add_argument("--build-only", action="store_true",
                   help="build every part's TVM modules for the target (no device needed) and exit")
    args = p.parse_args(argv)
    if args.build_only:
        return build_only(args.target, min(args.gemm, 512))
    tvm, torch = require_cuda()
    from onnx_hawq.compiler.build import parse_target

    target, parts = parse_target(args.target), args.parts.split(",")
    out = {"device": torch.cuda.get_device_name(0), "target": args.target, "tvm": tvm.__version__,
           "torch": torch.__version__}
    if "gemm" in parts:
        out["gemm"] = gemm(tvm, torch, target, args.gemm)
        print_row("gemm", out["gemm"])
    if "mma" in parts:
        out["mma"] = mma(tvm, torch, str(target.attrs.get("arch", "sm_90")), args.gemm)
        print_row("mma", out["mma"])
    if "resnet" in parts:
        out["resnet"] = resnet(tvm, torch, target, args.batch, args.plans.split(","))
        print_row("resnet", out["resnet"])
    atomic_write_json(RESULTS, out)
    print(f"wrote {RESULTS}")
    return 0


def build_only(spec: str, n: int) -> int:
    """The CPU-side part: build the GEMM, mma and QLinearMatMul modules for `spec` and print build seconds."""
    import tvm

    from onnx_hawq.compiler.build import build, parse_target
    from onnx_hawq.compiler.cuda_mma import build_mma_matmul, cuda_source

    target = parse_target(spec)
    for name, make in (("gemm", lambda: build(int8_matmul_module(tvm, n), target)),
                       ("mma", lambda: cuda_source(build_mma_matmul(n, n, n, str(target.attrs.get("arch", "sm_90"))))),
                       ("qlinearmatmul", lambda: build(qlinear_matmul_module(n), target))):
        start = time.perf_counter()
        make()
        print(f"built {name:14s} n={n} for {spec} in {time.perf_counter() - start:.1f}s")
    return 0


def print_row(name: str, row: dict) -> None:
    for key, value in row.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:7s} {key:24s} {text}")


if __name__ == "__main__":
    sys.exit(main())
