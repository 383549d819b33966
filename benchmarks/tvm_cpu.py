"""TVM on the CPU: quantized models built with `compile --target llvm` (the host's int8 ISA) vs onnxruntime.

    .venv/bin/python -m benchmarks.tvm_cpu [--threads 1,2] [--repeat 20] [--models resnet,digits,transformer]

Models: the ResNet-18-shaped model of benchmarks/models.py (batch 1, 224x224) and the digits samples
(sample_models/, batch 64), quantized W8A8. For each: onnxruntime vs TVM at 1 and 2 threads in the same
run (median ms; one child process per thread count, since TVM's thread pool is sized by TVM_NUM_THREADS
at start-up), and TVM's outputs checked bit for bit against onnxruntime. For the ResNet, every
distinct QLinearConv layer (with its requantization) is timed alone in both. Prints a table and
writes benchmarks/results/tvm_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import helper

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from onnx_hawq.config import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tvm_cpu.json"
SAMPLES = ROOT / "sample_models"


def median_ms(fn, repeat: int) -> float:
    """Median milliseconds of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def quantized(name: str):
    """(W8A8 model, feeds) for a benchmark model name."""
    from benchmarks.models import resnet
    from onnx_hawq.model_io import load_data
    from onnx_hawq.plans import uniform_plan
    from onnx_hawq.quantization import quantize_model

    if name == "resnet":
        r = np.random.default_rng(0)
        model, calib = resnet(), {"input": r.standard_normal((4, 3, 224, 224)).astype(np.float32)}
        feeds = {"input": r.standard_normal((1, 3, 224, 224)).astype(np.float32)}
    else:
        stem = {"digits": "digits_resnet", "transformer": "digits_transformer"}[name]
        model = onnx.load(str(SAMPLES / f"{stem}.onnx"))
        calib = load_data(SAMPLES / "digits_calib.npz", model)
        feeds = {k: v[:64] for k, v in load_data(SAMPLES / "digits_test.npz", model).items()}
    return quantize_model(model, uniform_plan("8"), calib).model, feeds


class Tvm:
    """A model built once with TVM for `spec`, run through the VM at a chosen thread count."""

    def __init__(self, model, feeds, spec: str):
        import tvm

        from onnx_hawq.compiler.build import build, parse_target
        from onnx_hawq.compiler.frontend import import_onnx
        from onnx_hawq.model_io import input_specs

        self.tvm, self.target = tvm, parse_target(spec)
        start = time.perf_counter()
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        self.vm = tvm.relax.VirtualMachine(build(import_onnx(model, shapes), self.target), tvm.cpu())
        self.build_s = time.perf_counter() - start
        self.args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[n]), tvm.cpu()) for n in input_specs(model)]

    def run(self):
        out = self.vm["main"](*self.args)
        return [out] if hasattr(out, "numpy") else list(out)

    def ms(self, repeat: int) -> float:
        """Median ms with the process's TVM thread pool (TVM_NUM_THREADS)."""
        return median_ms(self.run, repeat)


def compare(model, feeds, threads: list[int], repeat: int, spec: str) -> dict:
    """onnxruntime vs TVM ms per thread count, and TVM's mismatches vs onnxruntime."""
    from onnx_hawq.ort import session

    tv = Tvm(model, feeds, spec)
    want = session(model).run(None, feeds)
    got = [o.numpy() for o in tv.run()]
    row = {"tvm_build_s": round(tv.build_s, 1),
           "mismatches_vs_ort": int(sum(np.sum(g != w) for g, w in zip(got, want)))}
    for t in threads:
        sess = session(model, threads=t)
        ort_ms = median_ms(lambda: sess.run(None, feeds), repeat)
        tvm_ms = tv.ms(repeat)
        row[f"{t}t"] = {"ort_ms": ort_ms, "tvm_ms": tvm_ms, "tvm_over_ort": tvm_ms / ort_ms}
    return row


def conv_layers(model, feeds) -> list[tuple[onnx.ModelProto, dict, int]]:
    """One single-QLinearConv model per distinct layer shape of `model`, with its real input (from
    onnxruntime on `feeds`) and its count."""
    from onnx_hawq.ort import expose, session

    convs = [n for n in model.graph.node if n.op_type == "QLinearConv"]
    names = list(dict.fromkeys(n.input[0] for n in convs))
    acts = dict(zip(names, session(expose(model, names)).run(names, feeds)))
    inits = {i.name: i for i in model.graph.initializer}
    seen: dict[tuple, list] = {}
    for node in convs:
        w, x = onnx.numpy_helper.to_array(inits[node.input[3]]), acts[node.input[0]]
        x_shape = list(x.shape)
        key = (tuple(x_shape), w.shape, tuple(a.ints[0] for a in node.attribute if a.name == "strides"))
        if key in seen:
            seen[key][2] += 1
            continue
        graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info(node.input[0], 2, x_shape)],
                                  [helper.make_tensor_value_info(node.output[0], 2, None)],
                                  [inits[n] for n in node.input[1:] if n in inits])
        layer = helper.make_model(graph, opset_imports=list(model.opset_import))
        layer.ir_version = model.ir_version
        seen[key] = [layer, {node.input[0]: x}, 1]
    return [tuple(v) for v in seen.values()]


def layer_rows(model, feeds, threads: list[int], repeat: int, spec: str) -> list[dict]:
    rows = []
    for layer, feeds, count in conv_layers(model, feeds):
        node = layer.graph.node[0]
        w = next(i for i in layer.graph.initializer if i.name == node.input[3])
        row = {"layer": node.name, "x": list(next(iter(feeds.values())).shape), "w": list(w.dims), "count": count}
        rows.append({**row, **compare(layer, feeds, threads, repeat, spec)})
        print_row(row["layer"], rows[-1], threads)
    return rows


def fmt_row(name: str, row: dict, threads: list[int]) -> str:
    cells = "  ".join(f"{t}t ORT {row[f'{t}t']['ort_ms']:8.2f} TVM {row[f'{t}t']['tvm_ms']:8.2f} "
                      f"({row[f'{t}t']['tvm_over_ort']:5.2f}x)" for t in threads)
    return f"{name:32s} {cells}  mismatches {row['mismatches_vs_ort']}"


def print_row(name: str, row: dict, threads: list[int]) -> None:
    print(fmt_row(name, row, threads), flush=True)


def totals(layers: list[dict], threads: list[int]) -> dict:
    """Sum over the conv layers (each times its count) of ORT and TVM ms."""
    out = {}
    for t in threads:
        ort_ms = sum(r[f"{t}t"]["ort_ms"] * r["count"] for r in layers)
        tvm_ms = sum(r[f"{t}t"]["tvm_ms"] * r["count"] for r in layers)
        out[f"{t}t"] = {"ort_ms": ort_ms, "tvm_ms": tvm_ms, "tvm_over_ort": tvm_ms / ort_ms}
    return out


def measure(args, threads: list[int]) -> dict:
    """Every model (and the ResNet's conv layers) at `threads`, in this process."""
    from onnx_hawq.compiler.build import cpu_isa, parse_target
    from onnx_hawq.compiler.vnni import host_has_amx

    isa = cpu_isa(parse_target(args.target))
    out = {"target": args.target, "isa": isa.name if isa else "plain", "host_amx": host_has_amx(),
           "mcpu": str(parse_target(args.target).attrs.get("mcpu")), "repeat": args.repeat, "models": {}}
    for name in args.models.split(","):
        model, feeds = quantized(name)
        out["models"][name] = row = compare(model, feeds, threads, args.repeat, args.target)
        print_row(f"{name} (whole model)", row, threads)
        if name == "resnet" and not args.no_layers:
            row["conv_layers"] = layer_rows(model, feeds, threads, args.repeat, args.target)
            row["conv_layers_total"] = totals(row["conv_layers"], threads)
    return out


def merge(parts: dict[int, dict]) -> dict:
    """One result from the per-thread-count children (each row gains every child's `{t}t` entry)."""
    out = parts[min(parts)]
    for t, part in parts.items():
        for name, row in part["models"].items():
            dst = out["models"][name]
            dst[f"{t}t"] = row[f"{t}t"]
            for d, r in zip(dst.get("conv_layers", []), row.get("conv_layers", [])):
                d[f"{t}t"] = r[f"{t}t"]
            if "conv_layers_total" in row:
                dst["conv_layers_total"][f"{t}t"] = row["conv_layers_total"][f"{t}t"]
    return out


def children(argv: list[str], threads: list[int]) -> dict:
    """Run `measure` in one child per thread count with TVM_NUM_THREADS set; the merged result."""
    parts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for t in threads:
            path = pathlib.Path(tmp) / f"{t}.json"
            env = {**os.environ, "TVM_NUM_THREADS": str(t), "OMP_NUM_THREADS": str(t)}
            subprocess.run([sys.executable, "-m", "benchmarks.tvm_cpu", *argv, "--child", str(t), "--child-out",
                            str(path)], check=True, env=env, cwd=ROOT)
            parts[t] = json.loads(path.read_text())
    return merge(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--models", default="resnet,digits,transformer")
    p.add_argument("--target", default="llvm", help="llvm (the host's int8 ISA), llvm:vnni|avx2|plain")
    p.add_argument("--no-layers", action="store_true", help="skip the per-conv-layer figures")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        pathlib.Path(args.child_out).write_text(json.dumps(measure(args, [args.child])))
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    child = ["--repeat", str(args.repeat), "--models", args.models, "--target", args.target]
    out = children(child + (["--no-layers"] if args.no_layers else []), threads)
    print("\n".join(table(out, threads)))
    atomic_write_json(RESULTS, out)
    print(f"wrote {RESULTS}")
    return 0


def table(out: dict, threads: list[int]) -> list[str]:
    """The printed rows: each model, then the ResNet's conv layers and their sum."""
    lines = []
    for name, row in out["models"].items():
        lines.append(fmt_row(f"{name} (whole model)", row, threads))
        for layer in row.get("conv_layers", []):
            lines.append(fmt_row(f"  {layer['layer']} x{layer['count']}", layer, threads))
        if "conv_layers_total" in row:
            lines.append(fmt_row("  conv layers (sum)", {**row["conv_layers_total"], "mismatches_vs_ort": "-"}, threads))
    return lines


if __name__ == "__main__":
    sys.exit(main())
