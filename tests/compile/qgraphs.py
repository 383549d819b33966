"""Tiny typed ONNX graphs of integer ops, and the TVM-vs-onnxruntime bit-exactness assertion."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tests.helpers import run_ort

U8, I8, I32, F32 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.INT32, onnx.TensorProto.FLOAT


def typed_model(nodes, inputs, outputs, inits: dict, opset: int = 17) -> onnx.ModelProto:
    """A model from nodes, (name, elem type, shape) inputs/outputs and initializers."""
    vi = lambda n, t, s: helper.make_tensor_value_info(n, t, s)
    graph = helper.make_graph(nodes, "t", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def assert_tvm_equals_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    """Every graph output of TVM (llvm) equals onnxruntime's element for element; returns them."""
    from onnx_hawq.compiler.build import run_tvm

    want, got = run_ort(model, feeds), run_tvm(model, feeds)
    for name, w, g in zip([o.name for o in model.graph.output], want, got):
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, w.dtype, g.shape, w.shape)
        assert int(np.sum(g != w)) == 0, f"{name}: {int(np.sum(g != w))} of {w.size} differ"
    return got


def relax_text(model: onnx.ModelProto) -> str:
    from onnx_hawq.compiler.frontend import import_onnx

    return import_onnx(model).script()


def f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


# x_scale * w_scale / y_scale = b / 2^14 with b < 64: integer path; arbitrary scales: float path
EXACT = dict(xs=2.0**-4, ws=lambda r, n: r.integers(1, 32, n) * 2.0 * 2.0**-10, ys=1.0)
FLOAT = dict(xs=0.0173, ws=lambda r, n: r.uniform(0.001, 0.01, n), ys=0.0911)
PATHS = {"exact": (EXACT, "right_shift"), "float": (FLOAT, "nearbyint")}


def layer_inits(r, params, w, x_zp, y_zp):
    """Constants of a QLinear layer with weight `w` (output channels first) under `params`."""
    n = w.shape[0]
    return {"xs": f32(params["xs"]), "xz": np.uint8(x_zp), "w": w, "ws": f32(params["ws"](r, n)),
            "wz": np.zeros(n, np.int8), "ys": f32(params["ys"]), "yz": np.uint8(y_zp),
            "b": r.integers(-2000, 2000, n).astype(np.int32)}
