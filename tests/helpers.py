"""Tiny-graph builders and runners shared by the tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_models"


def make_model(nodes, inputs, outputs, inits: dict, opset: int = 17) -> onnx.ModelProto:
    """A model from nodes, (name, shape) inputs/outputs and {name: array} initializers."""
    vi = lambda n, s: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)
    graph = helper.make_graph(nodes, "t", [vi(n, s) for n, s in inputs], [vi(n, s) for n, s in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run_ort(model: onnx.ModelProto, feeds: dict, outputs=None) -> list:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def op_list(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
